"""Compute devices: what a ``--device`` name means on this machine, in one place.

A name is ``auto`` (a GPU when there is one, else the CPU), ``cpu``, ``cuda`` (the current GPU; with
several workers each takes ``cuda:LOCAL_RANK``, see ``distributed.worker_device``) or ``cuda:N``.
Every command, the engine, export, evaluation and the workbench resolve it here, so an unknown name
or a missing GPU is refused before anything is written, with one line saying what to use instead.
"""

from __future__ import annotations

import re

from dpsad_core.errors import ConfigError, DeviceError

__all__ = ["DEVICE_CHOICES", "check_gpus_for", "resolve_device"]

#: The names ``--device`` takes, for help texts and error messages.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def resolve_device(name: str) -> str:
    """The torch device string for ``name``: ``cpu``, ``cuda`` or ``cuda:N`` (N a GPU of this machine)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    index = _CUDA_INDEX.fullmatch(name)
    if name != "cuda" and index is None:
        raise ConfigError(f"unknown device {name!r}", field="device", value=name, remedy=f"use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA device is available", remedy="use --device cpu or auto")
    if index is not None and int(index.group(1)) >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)",
                          remedy=f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}, or cuda")
    return name


def check_gpus_for(nproc: int, device: str) -> None:
    """``--nproc N`` on CUDA needs N GPUs (one each), and ``--device cuda:K`` names only one."""
    if not resolve_device(device).startswith("cuda"):
        return
    import torch

    if device.startswith("cuda:") or nproc > torch.cuda.device_count():
        raise DeviceError(f"--nproc {nproc} on CUDA needs one GPU per worker; this machine has "
                          f"{torch.cuda.device_count()} (and --device cuda:K names only one)",
                          remedy="lower --nproc, or use --device cuda")
