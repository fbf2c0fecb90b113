import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tiny models run fastest single-threaded, and parallel test workers must not fight for cores.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    # Pretrained models the suite trains are cached in a temporary directory, never in the checkout.
    mp = pytest.MonkeyPatch()
    mp.setenv("MBO_CACHE_DIR", str(tmp_path_factory.mktemp("mbo-cache")))
    yield
    mp.undo()
