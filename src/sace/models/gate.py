"""Per-call routing that scale-gated adapters read while a family's transformer runs (shared by every
family: the transformer publishes it in scopes, :mod:`sace.adapters` only reads it)."""

from __future__ import annotations

import contextlib

from torch import Tensor

__all__ = ["GateContext"]


class GateContext:
    """What scale-gated adapters read while the transformer runs.

    ``token_scale_ids``: ``(N,)`` int64 scale index of each token in the tensor currently being projected
    by an image-stream linear layer (self-attention, cross-attention queries/outputs, FFN).
    ``text_scale``: the scale whose condition is being computed by a text-stream layer (cross-attention
    K/V, text pool, text projection); ``None`` outside such a computation.
    The transformer sets these; adapters only read them.
    """

    def __init__(self) -> None:
        self.token_scale_ids: Tensor | None = None
        self.text_scale: int | None = None

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
