"""dpsad_core.devices: what a --device name means on this machine, checked without a GPU."""

from __future__ import annotations

import pytest
import torch

from dpsad_core.devices import check_gpus_for, resolve_device
from dpsad_core.errors import ConfigError, DeviceError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``count`` CUDA GPUs (nothing here touches one)."""
    def pretend(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    return pretend


def test_auto_is_a_gpu_when_there_is_one_else_the_cpu(gpus):
    gpus(0)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    gpus(2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda" and resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:0:1", "mps", ""])
def test_an_unknown_name_is_refused_naming_it_and_the_choices(gpus, name):
    gpus(1)
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N") as error:
        resolve_device(name)
    assert repr(name) in str(error.value) and "\n" not in str(error.value)


def test_a_gpu_this_machine_lacks_is_a_device_error(gpus):
    gpus(0)
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda:0")
    gpus(2)
    with pytest.raises(DeviceError, match="'cuda:2' does not exist: this machine has 2 GPU") as error:
        resolve_device("cuda:2")
    assert "cuda:0 to cuda:1" in str(error.value)


def test_several_workers_on_cuda_need_a_gpu_each(gpus):
    gpus(1)
    check_gpus_for(4, "cpu")  # gloo workers on the CPU: no GPU needed
    check_gpus_for(1, "cuda")
    with pytest.raises(DeviceError, match="one GPU per worker; this machine has 1"):
        check_gpus_for(2, "cuda")
    gpus(2)
    with pytest.raises(DeviceError, match="cuda:K names only one"):
        check_gpus_for(2, "cuda:0")
