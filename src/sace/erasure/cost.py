"""Wall time and peak memory of a piece of work (the cost column of the comparison table).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset; on the CPU, the process's peak
resident set (``VmHWM`` in ``/proc/self/status``), reset before the work by writing ``5`` to
``/proc/self/clear_refs`` (Linux). Where neither is available the peak is reported as ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Cost:
    seconds: float
    peak_mb: float | None
    device: str

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "peak_mb": None if self.peak_mb is None else round(self.peak_mb, 1),
                "device": self.device}


def _rss_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_rss_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory from construction on: :meth:`peak_mb` (MB, ``None`` where it cannot be measured).

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset; CPU: the process's ``VmHWM`` after a reset
    through ``/proc/self/clear_refs`` (Linux only).
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._ok = True
        else:
            self._ok = _reset_rss_hwm()

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _rss_hwm_mb() if self._ok else None


def measure(fn: Callable[[], Any], device: str | torch.device = "cpu") -> tuple[Any, Cost]:
    """Run ``fn()`` and return (its result, :class:`Cost`)."""
    mem = PeakMemory(device)
    t = time.perf_counter()
    out = fn()
    peak = mem.peak_mb()
    return out, Cost(time.perf_counter() - t, peak, str(mem.device))
