"""Transformer pieces every family shares (Infinity: :mod:`sace.models.infinity.transformer`, VAR:
:mod:`sace.models.var.transformer`): per-scale condition segments, the AdaLN modulation, the head's AdaLN
projection, the self-attention KV cache and the adapter plumbing a transformer offers its wrapper.

Each function performs exactly the tensor operations the two transformers performed before they shared it,
in the same order (the parity fixtures compare logits bit for bit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Segment", "segments_of", "layer_norm", "adaln", "per_token", "extend_kv_cache", "AdaLNBeforeHead",
           "FFN", "AdapterHost"]


@dataclass
class Segment:
    """A run ``[start, end)`` of consecutive tokens that share one condition state (per-scale conditioning);
    ``state`` is the family's ``ConditionState``."""

    start: int
    end: int
    state: Any


def segments_of(states: Sequence[Any], offsets: list[int]) -> list[Segment]:
    """Merge consecutive scales that share a state (the same object) into segments.

    Args:
        states: one condition state per scale ``k``.
        offsets: the schedule's token offsets (``K + 1`` ints); scale ``k`` covers ``[offsets[k], offsets[k+1])``.
    """
    segs: list[Segment] = []
    for k, st in enumerate(states):
        if segs and segs[-1].state is st:
            segs[-1].end = offsets[k + 1]
        else:
            segs.append(Segment(offsets[k], offsets[k + 1], st))
    return segs


def layer_norm(x: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last axis without affine parameters (both families' pre-norm)."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def adaln(x: Tensor, eps: float, scale: Tensor, shift: Tensor) -> Tensor:
    """AdaLN modulation ``LN(x) * (1 + scale) + shift`` (``x (B, N, C)``; scale/shift broadcast to it)."""
    return layer_norm(x, eps).mul(scale.add(1)).add_(shift)


def per_token(segments: Sequence[Segment], get: Callable[[Any], Tensor], b: int, c: int, rows: int) -> Tensor:
    """A per-row condition tensor ``get(state)`` ``(B, rows, C)`` laid out per token: ``(B, 1, rows, C)`` for one
    segment (broadcast over the tokens), else ``(B, N, rows, C)`` with every token of a segment given its
    segment's rows."""
    if len(segments) == 1:
        return get(segments[0].state).unsqueeze(1)
    return torch.cat([get(s.state).unsqueeze(1).expand(b, s.end - s.start, rows, c) for s in segments], 1)


def extend_kv_cache(kv_cache: list | None, i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Self-attention keys/values ``(B, H, N, c)`` of block ``i`` appended (along the tokens) to the block's
    cached ones; the cache (one ``(k, v)`` or ``None`` per block) is updated in place. Without a cache
    ``(k, v)`` come back as given."""
    if kv_cache is not None:
        if kv_cache[i] is not None:
            k = torch.cat((kv_cache[i][0], k), 2)
            v = torch.cat((kv_cache[i][1], v), 2)
        kv_cache[i] = (k, v)
    return k, v


class AdaLNBeforeHead(nn.Module):
    """The head's AdaLN projection ``SiLU -> Linear(C, 2C)`` (``head_nm.ada_lin`` in both references)."""

    def __init__(self, c: int):
        super().__init__()
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 2 * c))


class FFN(nn.Module):
    """The feed-forward sublayer ``fc2(GELU_tanh(fc1(x)))``, ``C -> hidden -> C`` (names as the references')."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AdapterHost:
    """What a transformer offers its model wrapper about the attached adapters; the transformer sets
    ``self.adapter_set`` (:class:`sace.adapters.AdapterSet`, set by ``attach_adapter``, or ``None``) in its
    ``__init__``."""

    adapter_set: Any

    def gate_signature(self, scale: int) -> tuple:
        """Names of the adapters active on the condition (text) path of ``scale`` (the prepared-condition
        cache key)."""
        return () if self.adapter_set is None else self.adapter_set.signature(scale)

    def strict_scale0(self) -> bool:
        """True when an active adapter asks for strict scale-0 isolation (two-stream forward)."""
        return self.adapter_set is not None and self.adapter_set.strict()

    def adapters_off(self):
        """Context manager with every adapter switched off (a no-op without adapters)."""
        return contextlib.nullcontext() if self.adapter_set is None else self.adapter_set.disabled()
