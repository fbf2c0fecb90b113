import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tiny models run fastest single-threaded, and parallel test workers must not fight for cores.
    torch.set_num_threads(1)
