"""Per-call routing that scale-gated adapters read while a family's transformer runs (shared by every
family: the transformer publishes it in scopes, :mod:`sace.adapters` only reads it)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

__all__ = ["GateContext"]


class GateContext:
    """What scale-gated adapters read while the transformer runs.

    ``token_scale_ids``: ``(N,)`` int64 scale index of each token in the tensor currently being projected
    by an image-stream linear layer (self-attention, cross-attention queries/outputs, FFN).
    ``text_scale``: the scale whose condition is being computed by a text-stream layer (cross-attention
    K/V, text pool, text projection); ``None`` outside such a computation.
    The transformer sets these; adapters only read them.

    ``overflow``: a 0-d bool tensor, set by an adapter branch whose output held inf/NaN since the last
    :meth:`take_overflow` (kept as a tensor so that noting it costs no device sync). It exists because
    attention hides such values: torch's CPU ``scaled_dot_product_attention`` returns zeros for a NaN query
    row, so huge adapter weights can give finite but meaningless logits.
    """

    def __init__(self) -> None:
        self.token_scale_ids: Tensor | None = None
        self.text_scale: int | None = None
        self.overflow: Tensor | None = None

    def note_output(self, delta: Tensor) -> None:
        """Record whether an adapter branch's output ``delta`` (any shape, float) holds a non-finite value."""
        bad = ~torch.isfinite(delta.detach()).all()
        self.overflow = bad if self.overflow is None else self.overflow | bad

    def take_overflow(self) -> bool:
        """Whether any adapter output was non-finite since the last call; resets the record."""
        bad, self.overflow = self.overflow, None
        return bool(bad) if bad is not None else False

    @contextlib.contextmanager
    def scope(self, token_scale_ids: Tensor | None = None, text_scale: int | None = None):
        """Publish the routing of one computation; the previous values come back on exit (also on an
        exception), so nothing stays behind after a call."""
        saved = self.token_scale_ids, self.text_scale
        self.token_scale_ids, self.text_scale = token_scale_ids, text_scale
        try:
            yield self
        finally:
            self.token_scale_ids, self.text_scale = saved
