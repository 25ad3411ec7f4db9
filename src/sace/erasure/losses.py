"""The erasure losses, written once, on top of the model's token kind (:mod:`sace.models.tokens`), so every
objective works for any token layout. All return scalar float32 tensors (nats), averaged over every
row, token and token factor unless said otherwise.

Sources: SACE's L_ER / L_pre (``shared/docs/METHOD.md`` §3); S-VARE's filtered cross-entropy (Zhong et al.,
ICLR 2026, ``ndhg1213/S-VARE``; ``shared/docs/related-work.md`` §3.3); ESD's negatively guided target
(Gandikota et al., ICCV 2023, ``esd_sd.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..models.base import ScaleLogits, TokenPyramid
from ..models.tokens import TokenKind


def kl(kind: TokenKind, q_logits: Tensor, p_logits: Tensor) -> Tensor:
    """Mean ``KL(q || p)`` (teacher q, student p) over everything."""
    return kind.kl(q_logits, p_logits).mean()


def kl_per_scale(kind: TokenKind, teachers: Sequence[Tensor], students: Sequence[Tensor]) -> Tensor:
    """Equal-weight mean over scales of :func:`kl` (one logits tensor per scale on each side)."""
    return torch.stack([kl(kind, q, p) for q, p in zip(teachers, students, strict=True)]).mean()


def entropy(kind: TokenKind, logits: Sequence[Tensor]) -> Tensor:
    """Equal-weight mean over scales of the mean entropy of ``logits``."""
    return torch.stack([kind.entropy(z).mean() for z in logits]).mean()


def cross_entropy(kind: TokenKind, logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean cross-entropy of ``M`` token sets ``(M, B, n, *F)`` under one set of logits ``(B, n, *F, V)``."""
    return -kind.log_prob(logits.unsqueeze(0).expand(tokens.shape[0], *logits.shape), tokens).mean()


def filtered_cross_entropy(kind: TokenKind, logits: Sequence[Tensor], labels: Sequence[Tensor],
                           alpha: float, seq_len: int) -> Tensor:
    """S-VARE's erasure loss: per-factor CE to the anchor tokens, kept only on tokens where at least a
    fraction ``alpha`` of the factors is wrong (CE > ln V, worse than uniform: ln 2 for bits), summed over
    tokens and scales, divided by the
    sequence length ``seq_len`` and averaged over rows. ``logits[k]`` ``(B, n_k, *F, V)``, ``labels[k]``
    ``(B, n_k, *F)``."""
    total, wrong = 0.0, math.log(kind.num_classes)
    for z, lab in zip(logits, labels, strict=True):
        ce = -kind.log_prob(z, lab)                                   # (B, n_k, F)
        keep = ((ce > wrong).float().mean(-1) >= alpha).float()       # tokens with enough wrong factors
        total = total + (ce.mean(-1) * keep).sum(1)
    return (total / seq_len).mean()


def kl_summed(kind: TokenKind, teachers: Sequence[Tensor], students: Sequence[Tensor], seq_len: int) -> Tensor:
    """S-VARE's preservation KL: per-token KL summed over tokens and scales / ``seq_len``, mean over rows."""
    total = 0.0
    for q, p in zip(teachers, students, strict=True):
        total = total + kind.kl(q, p).mean(-1).sum(1)
    return (total / seq_len).mean()


def esd_target(cond: Tensor, uncond: Tensor, eta: float) -> Tensor:
    """ESD's negatively guided target logits ``z(null) - eta * (z(c*) - z(null))`` (frozen model)."""
    return uncond - eta * (cond - uncond)


def sequence_log_likelihood(logits: ScaleLogits, pyramid: TokenPyramid) -> Tensor:
    """``(B,)`` mean log-likelihood (nats) per token element (a bit of Infinity's bit tokens, an index of a
    categorical token) of ``pyramid`` under ``logits``, over all scales; the token kind does the math."""
    total, count = 0.0, 0
    for k, z in enumerate(logits.per_scale):
        lp = logits.kind.log_prob(z, pyramid.flat(k))        # (B, n_k, *F)
        total = total + lp.flatten(1).sum(1)
        count += lp[0].numel()
    return total / count
