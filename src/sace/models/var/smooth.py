"""VAR's ``more_smooth`` sampling: soft Gumbel-softmax codes instead of the sampled indices, for smoother
visualisations (not for FID).

Reference: ``autoregressive_infer_cfg(more_smooth=True)`` and ``gumbel_softmax_with_rng`` of
FoundationVision/VAR (``models/var.py``, ``models/helpers.py``); facts in
``shared/docs/reference-models.md`` §3 "Sampling details". At scale k, with ratio ``r = k/(K-1)``:

1. the indices are drawn as usual (one ``torch.multinomial`` from the top-k/top-p-filtered guided logits),
   then discarded;
2. the same generator draws ``E ~ Exp(1)`` of shape ``(B, n_k, V)``; ``G = -log E`` is Gumbel noise;
3. the code is ``softmax((filtered * (1 + r) + G) / tau_k) @ codebook`` with
   ``tau_k = max(0.27 (1 - 0.95 r), 0.005)`` (filtered-out entries get weight 0).

The loop drives the model's own sampling primitives (``begin_sampling``, ``step_logits``,
``commit_codes``); the plain (hard) sampler is :func:`sace.sampling.sample`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import SaceError
from ..base import Condition
from ..tokens import filter_top_k_top_p
from .model import VARModel, guidance_ramp


@dataclass
class SmoothResult:
    """Indices drawn per scale (``(B, n_k)``, not used for the codes), final ``fhat`` and images in [0, 1]."""

    indices: list[Tensor]
    fhat: Tensor
    images: Tensor


def gumbel_tau(ratio: float) -> float:
    """Gumbel-softmax temperature at scale ratio ``k/(K-1)``."""
    return max(0.27 * (1 - ratio * 0.95), 0.005)


@torch.no_grad()
def sample_more_smooth(model: VARModel, cond: Condition, *, cfg: float = 4.0, top_k: int = 900, top_p: float = 0.95,
                       generator: torch.Generator | None = None) -> SmoothResult:
    """Generate with soft codes (see the module docstring); guidance is VAR's ramp ``w_k = 1 + cfg k/(K-1)``.

    Args:
        cond: ``B`` rows of class conditions (:meth:`VARModel.encode_prompts`).
        generator: a CPU ``torch.Generator`` (seeded by the caller) consumed exactly as the reference does.
    Raises:
        SaceError: a model of another family.
    """
    if not isinstance(model, VARModel):
        raise SaceError("more_smooth sampling is defined for VAR models only")
    sch, kind = model.schedule, model.token_kind
    k_all = sch.num_scales
    ws = guidance_ramp(cfg, k_all)
    st = model.begin_sampling([cond] * k_all, [model.null_condition(cond)] * k_all, sch)
    codebook = model.vae.quantize.embedding.weight
    drawn = []
    for k in range(k_all):
        zc, zu = model.step_logits(st, k)
        guided = kind.guide(zc, zu, ws[k])
        drawn.append(kind.sample(guided, top_k, top_p, generator))
        ratio = k / max(k_all - 1, 1)
        filtered = filter_top_k_top_p(guided.float(), top_k, top_p)
        gumbel = -torch.empty_like(filtered).exponential_(generator=generator).log()
        soft = ((filtered * (1 + ratio) + gumbel) / gumbel_tau(ratio)).softmax(-1)     # (B, n_k, V)
        h, w = sch.grids[k]
        code = (soft @ codebook.unsqueeze(0)).transpose(1, 2).reshape(soft.shape[0], -1, h, w)
        model.commit_codes(st, k, code)
    return SmoothResult(drawn, st.fhat, model.finish_sampling(st))
