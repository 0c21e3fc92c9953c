"""What this machine offers to experiments: CPUs, GPUs and memory."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Capacity:
    cpus: float
    gpus: int
    memory: int


def gpu_count() -> int:
    """GPUs NVML can see; none when the driver or library is absent."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:  # any NVML failure means no usable GPU
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def machine_capacity() -> Capacity:
    import psutil

    return Capacity(
        cpus=float(os.cpu_count() or 1),
        gpus=gpu_count(),
        memory=int(psutil.virtual_memory().total),
    )
