"""Token kinds: the per-token math of a scale-wise model family, so no caller writes bit-only math.

A token kind knows how a family's head logits and tokens are laid out and owns every computation that
depends on that layout: guidance mixing, filtering and sampling, entropy, log-probability, KL and
Jensen-Shannon divergences, argmax and flips.

Both kinds seen in the VAR family are *categorical over the last logit axis*; they differ in the axes in
between. Shapes (``n`` = tokens of one scale, ``V`` = categories):

* :class:`BitTokens` (Infinity, bitwise tokens; ``FoundationVision/Infinity: infinity/models/infinity.py``):
  logits ``(B, n, d, 2)``, tokens ``(B, n, d)`` (grid form ``(B, h, w, d)``) in {0, 1}.
* :class:`IndexTokens` (VAR, ``FoundationVision/VAR: models/var.py``): logits ``(B, n, V)``, tokens ``(B, n)``
  (grid form ``(B, h, w)``) int64 in [0, V).

**Elementwise results** (entropy, log-prob, KL, JS, flips) always have shape ``(B, n, F)``: one value per
*factor* of a token -- F = d independent bits for bit tokens, F = 1 for an index token. Callers reduce with
``.mean(-1)`` (per token), ``.mean((1, 2))`` (per row) or ``.mean()``, which means the same thing for every kind.
A new kind subclasses :class:`TokenKind` and sets :attr:`TokenKind.factor_axes` (the token axes after ``n``)
and ``num_classes``; it overrides a method only where its math differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import SaceError

__all__ = ["TokenKind", "BitTokens", "IndexTokens", "guide_logits", "filter_top_k_top_p", "bernoulli_js"]


def guide_logits(cond: Tensor, uncond: Tensor | None, w: float, tau: float = 1.0) -> Tensor:
    """Classifier-free guidance on logits: ``w * cond/tau + (1 - w) * uncond/tau``.

    Args:
        cond, uncond: logits of the same shape (any), float. ``uncond`` may be ``None`` when ``w == 1``.
        w: guidance weight (1 = none). tau: temperature (> 0), applied before mixing as the reference does
            (``FoundationVision/Infinity: infinity/models/infinity.py, autoregressive_infer_cfg``).
    Raises:
        SaceError: ``tau <= 0`` or ``uncond`` missing while ``w != 1``.
    """
    if not tau > 0 or not math.isfinite(tau):
        raise SaceError(f"temperature must be a positive finite number, got {tau}")
    c = cond.mul(1.0 / tau)
    if w == 1:
        return c
    if uncond is None:
        raise SaceError(f"guidance weight {w} needs unconditional logits")
    return w * c + (1 - w) * uncond.mul(1.0 / tau)


def filter_top_k_top_p(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Mask logits ``(..., V)`` outside the top-k and the nucleus with -inf (returns a new tensor).

    top-k keeps the k largest (k >= V keeps all; for bit tokens V = 2 so Infinity's k = 900 is a no-op);
    top-p drops, in ascending order, entries whose cumulative probability is <= 1 - p, always keeping
    the largest (reference: ``sample_with_top_k_top_p_also_inplace_modifying_logits_``).
    """
    v = logits.shape[-1]
    out = logits.clone()
    if 0 < top_k < v:
        kth = out.topk(top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p > 0:
        srt, idx = out.sort(dim=-1, descending=False)
        remove = srt.softmax(-1).cumsum(-1) <= (1 - top_p)
        remove[..., -1:] = False
        out = out.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return out


class TokenKind:
    """Categorical tokens over the last logit axis (the shared math; see the module docstring).

    Attributes:
        name: ``"bits"`` or ``"index"`` (written into metadata).
        factor_axes: the token axes after ``n`` (bits: ``(d,)``; index tokens: ``()``).
        num_classes: V, categories per factor (bits: 2).
    """

    name = "categorical"
    factor_axes: tuple[int, ...] = ()
    num_classes: int = 0

    # -- layout ----------------------------------------------------------------------------------------
    def logits_shape(self, batch: int, n: int) -> tuple[int, ...]:
        """Shape of one scale's logits: ``(B, n, *factor_axes, V)``."""
        return (batch, n, *self.factor_axes, self.num_classes)

    def grid(self, tokens: Tensor, h: int, w: int) -> Tensor:
        """Flat tokens ``(B, h*w, *F)`` -> grid tokens ``(B, h, w, *F)``."""
        return tokens.reshape(tokens.shape[0], h, w, *self.factor_axes)

    def flat(self, tokens: Tensor) -> Tensor:
        """Grid tokens ``(B, h, w, *F)`` -> ``(B, h*w, *F)`` int64."""
        return tokens.flatten(1, 2).long()

    def elements(self, x: Tensor) -> Tensor:
        """A per-factor quantity ``(B, n, *F)`` as ``(B, n, F)`` (index tokens get F = 1)."""
        return x if self.factor_axes else x.unsqueeze(-1)

    # -- guidance and sampling -------------------------------------------------------------------------
    def guide(self, cond: Tensor, uncond: Tensor | None, w: float, tau: float = 1.0) -> Tensor:
        """Guided, tempered logits (:func:`guide_logits`; the same for every categorical kind)."""
        return guide_logits(cond, uncond, w, tau)

    def sample(self, logits: Tensor, top_k: int, top_p: float,
               generator: torch.Generator | Sequence[torch.Generator] | None) -> Tensor:
        """Draw tokens ``(B, n, *F)`` int64 from guided logits ``(B, n, *F, V)``.

        ``generator``: one ``torch.Generator`` -- a single ``torch.multinomial`` over all rows, tokens and
        factors, as Infinity's sampler does, so a fixed seed reproduces the reference -- or a list of B
        generators (one multinomial per row: a row's draw does not depend on the rest of the batch).
        Raises: SaceError when the number of generators is not B.
        """
        b, n = logits.shape[:2]
        v = logits.shape[-1]
        z = filter_top_k_top_p(logits.reshape(b, -1, v).float(), top_k, top_p)
        probs = z.softmax(-1)
        if isinstance(generator, (list, tuple)):
            if len(generator) != b:
                raise SaceError(f"{len(generator)} generators for a batch of {b}")
            rows = [torch.multinomial(probs[i], 1, replacement=True, generator=g).view(n, *self.factor_axes)
                    for i, g in enumerate(generator)]
            return torch.stack(rows)
        return torch.multinomial(probs.view(-1, v), 1, replacement=True,
                                 generator=generator).view(b, n, *self.factor_axes)

    def sample_independent(self, logits: Tensor, num: int, generator: torch.Generator | None) -> Tensor:
        """``num`` independent draws ``(num, B, n, *F)`` int64 from the untruncated logits, by inverse CDF on
        ``torch.rand`` uniforms of ``generator`` (one uniform per factor and draw)."""
        probs = logits.float().softmax(-1)
        u = torch.rand((num, *probs.shape[:-1], 1), generator=generator)
        return (u >= probs.cumsum(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)

    # -- measures (elementwise, (B, n, F)) -------------------------------------------------------------
    def log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities ``(..., V)`` float32 (nats)."""
        return logits.float().log_softmax(-1)

    def entropy(self, logits: Tensor) -> Tensor:
        """Entropy in nats per factor: ``(B, n, *F, V)`` -> ``(B, n, F)`` in ``[0, ln V]``."""
        logp = self.log_probs(logits)
        return self.elements(-(logp.exp() * logp).sum(-1))

    def log_prob(self, logits: Tensor, tokens: Tensor) -> Tensor:
        """Log-probability (nats) of ``tokens (..., *F)`` under ``logits (..., *F, V)`` -> ``(..., F)``
        (leading axes must match; use :meth:`flat` for grid tokens)."""
        lp = self.log_probs(logits)
        return self.elements(lp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1))

    def kl(self, q_logits: Tensor, p_logits: Tensor) -> Tensor:
        """``KL(q || p)`` in nats per factor, ``q`` and ``p`` given as logits of the same shape -> ``(B, n, F)``."""
        lq, lp = self.log_probs(q_logits), self.log_probs(p_logits)
        return self.elements((lq.exp() * (lq - lp)).sum(-1))

    def js(self, a_logits: Tensor, b_logits: Tensor) -> Tensor:
        """Jensen-Shannon divergence (Lin 1991) in nats per factor -> ``(B, n, F)`` in ``[0, ln 2]``."""
        pa, pb = self.log_probs(a_logits).exp(), self.log_probs(b_logits).exp()
        m = 0.5 * (pa + pb)
        kl_m = lambda p: (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
        return self.elements((0.5 * kl_m(pa) + 0.5 * kl_m(pb)).clamp(0.0, math.log(2.0)))

    def argmax(self, logits: Tensor) -> Tensor:
        """Most likely tokens ``(B, n, *F)`` int64 (ties: the lowest index)."""
        return logits.argmax(-1)

    def flips(self, a_tokens: Tensor, b_tokens: Tensor) -> Tensor:
        """1.0 where two token sets ``(B, n, *F)`` differ, per factor -> ``(B, n, F)`` float32."""
        return self.elements((a_tokens != b_tokens).float())

    def check_logits(self, logits: Tensor, where: str = "logits") -> None:
        """Raise SaceError unless ``logits`` is ``(B, n, *factor_axes, V)``."""
        want = len(self.factor_axes) + 3
        if logits.ndim != want or tuple(logits.shape[2:]) != (*self.factor_axes, self.num_classes):
            raise SaceError(f"{where} have shape {tuple(logits.shape)}; {self.name} tokens need "
                            f"(B, n, {', '.join(map(str, (*self.factor_axes, self.num_classes)))})")


class BitTokens(TokenKind):
    """Infinity's bitwise tokens: ``d`` independent binary factors per token.

    Logits ``(B, n, d, 2)`` (``[..., j, 0]`` the logit of bit j = 0, ``[..., j, 1]`` of bit j = 1: Infinity's
    head layout); tokens ``(B, n, d)`` in {0, 1}; bit j is latent channel j of the BSQ code.
    """

    name = "bits"
    num_classes = 2

    def __init__(self, depth: int):
        if depth < 1:
            raise SaceError(f"bit tokens need at least one bit, got depth {depth}")
        self.depth = int(depth)
        self.factor_axes = (self.depth,)

    def __repr__(self) -> str:
        return f"BitTokens(depth={self.depth})"

    def prob_one(self, logits: Tensor) -> Tensor:
        """``(B, n, d)`` probability of bit = 1."""
        return logits.float().softmax(-1)[..., 1]

    def sample_independent(self, logits: Tensor, num: int, generator: torch.Generator | None) -> Tensor:
        """``num`` draws ``(num, B, n, d)``: bit = 1 where a uniform falls below P(bit = 1)."""
        probs = self.prob_one(logits)
        u = torch.rand((num, *probs.shape), generator=generator)
        return (u < probs).long()

    def js(self, a_logits: Tensor, b_logits: Tensor) -> Tensor:
        """Bernoulli JS on P(bit = 1) (:func:`bernoulli_js`) -> ``(B, n, d)`` in ``[0, ln 2]``."""
        return bernoulli_js(self.prob_one(a_logits), self.prob_one(b_logits))

    def argmax(self, logits: Tensor) -> Tensor:
        """Bits ``(B, n, d)``: 1 where P(bit = 1) > 1/2 (a tie gives 0)."""
        return (self.prob_one(logits) > 0.5).long()


class IndexTokens(TokenKind):
    """One categorical index per token (VAR's VQ codebook): logits ``(B, n, V)``, tokens ``(B, n)`` in [0, V);
    elementwise results have F = 1. All math is :class:`TokenKind`'s."""

    name = "index"

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise SaceError(f"index tokens need a codebook of at least 2 entries, got {num_classes}")
        self.num_classes = int(num_classes)
        self.factor_axes = ()

    def __repr__(self) -> str:
        return f"IndexTokens(num_classes={self.num_classes})"


def bernoulli_js(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence between Bernoulli distributions given by P(1), elementwise, in **nats**.

    ``JS(p, q) = KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2`` (Lin 1991), using ``0 log 0 = 0``
    (exact at p, q in {0, 1}); symmetric, clamped to ``[0, ln 2]``. Float64 inputs stay float64, others
    become float32.
    """
    dt = torch.float64 if torch.float64 in (p.dtype, q.dtype) else torch.float32
    p, q = p.to(dt), q.to(dt)
    m = (p + q) / 2

    def kl_to_m(a: Tensor) -> Tensor:
        return (torch.xlogy(a, a) - torch.xlogy(a, m) + torch.xlogy(1 - a, 1 - a) - torch.xlogy(1 - a, 1 - m))

    return (0.5 * kl_to_m(p) + 0.5 * kl_to_m(q)).clamp(0.0, math.log(2.0))
