"""Whether Triton kernels can run on a tensor: it is on a CUDA device and triton is installed (the
kernel modules import triton at their top, so they are imported only after this says yes)."""

from __future__ import annotations

from importlib.util import find_spec

import torch


def triton_runs_on(tensor: torch.Tensor) -> bool:
    return tensor.is_cuda and find_spec("triton") is not None
