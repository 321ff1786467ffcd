"""The devices a generation runs on, from a spec such as ``--gpus`` takes: one worker each (a thread,
or a process with --device-workers processes)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import DeviceError


def resolve_devices(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Torch device names for *spec*: ``"all"`` (every visible GPU), ``"cpu"``, a count ``"N"`` (the
    first N GPUs), or indices ``"0,2"``.  A sequence of device names is taken as it is (``("cpu",
    "cpu")`` runs two CPU workers).  Without a CUDA device, ``"all"`` is refused rather than silently
    meaning the CPU (a real model there is hours per problem): the CPU is asked for as ``"cpu"``."""
    if not isinstance(spec, str):
        if not spec:
            raise DeviceError("no devices given")
        return tuple(spec)
    import torch  # only here: evaluating needs no torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    spec = spec.strip().lower()
    if spec == "cpu":
        return ("cpu",)
    if spec == "all":
        if available == 0:
            raise DeviceError("no CUDA device is visible, so generation would run on the CPU; pass --gpus cpu to do that")
        return tuple(f"cuda:{i}" for i in range(available))
    try:
        indices = list(range(int(spec))) if spec.isdigit() else [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise DeviceError(f"--gpus: expected 'all', 'cpu', a count or indices like '0,2', got {spec!r}") from None
    if not indices or max(indices) >= available or min(indices) < 0:
        raise DeviceError(f"--gpus {spec}: {available} CUDA device(s) visible")
    return tuple(f"cuda:{i}" for i in dict.fromkeys(indices))
