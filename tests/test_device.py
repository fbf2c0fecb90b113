import logging

import pytest
import torch

from mbo import device as device_module
from mbo.device import DeviceError, resolve_device, set_threads


@pytest.mark.parametrize("name", ["xpu", "meta", "vulkan"])
def test_a_device_kind_the_project_does_not_run_on_is_refused_by_name(name):
    with pytest.raises(DeviceError, match=f"device '{name}' is not supported; use auto, cpu, cuda"):
        resolve_device(name)


def test_mps_is_refused_where_torch_has_none(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="'mps' was asked for, but this torch has no MPS"):
        resolve_device("mps")


def test_more_threads_than_cores_are_cut_to_the_cores_with_a_warning(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.setattr(device_module, "available_cores", lambda: 1)
    try:
        with caplog.at_level(logging.WARNING, logger="mbo.device"):
            set_threads(1000)
        assert torch.get_num_threads() == 1
        assert "threads=1000 is more than the 1 core(s) this process may use; using 1" in caplog.text
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("setting", [0, -1, 2.7, True, "0"])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(setting):
    with pytest.raises(ValueError, match="threads must be auto, null or an integer >= 1"):
        set_threads(setting)
