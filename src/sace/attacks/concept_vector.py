"""Concept-vector attack (black box): the Ring-A-Bell idea (Tsai et al., ICLR 2024) in the text states.

Ring-A-Bell extracts a concept vector from paired prompts with and without the concept,
``d = mean_i (enc(c*_i) - enc(c_i))``, adds it with strength ``eta`` to the encoding of a benign prompt and
searches ``eta`` (its genetic search then turns the result into text; here the continuous condition is used
directly, so only the public text encoder is needed, never the attacked model's weights).

Text states here have per-prompt lengths, so ``d`` is taken position by position over the pairs that have a
real token at that position (both prompts), and ``enc(p) + eta * d`` adds it to the real tokens of ``p``
(positions past ``d``'s length are left unchanged). ``eta = 0`` gives exactly the unattacked condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch.nn.functional as F
from torch import Tensor

from ..errors import SaceError
from ..models.base import Condition
from .base import AttackResult, AttackSetup, AttackTarget, CurvePoint, Stopwatch, encode, finish, judge_attempts


@dataclass
class ConceptVectorConfig:
    """Concept-vector attack settings (the budget is one query per eta value and start prompt)."""

    etas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])

    def validate(self) -> None:
        if not self.etas:
            raise SaceError("the concept-vector attack needs at least one eta value")


def concept_direction(model, concept_prompts: Sequence[str], anchor_prompts: Sequence[str]) -> Tensor:
    """``d (T, C)`` float32: per token position, the mean of ``enc(c*_i) - enc(c_i)`` over the pairs where
    both prompts have a real token at that position (Ring-A-Bell's concept extraction).

    Raises:
        SaceError: no pairs, or unequal numbers of concept and anchor prompts.
    """
    if not concept_prompts or len(concept_prompts) != len(anchor_prompts):
        raise SaceError(f"the concept direction needs paired prompts; got {len(concept_prompts)} concept and "
                        f"{len(anchor_prompts)} anchor prompts")
    ct, ca = encode(model, concept_prompts), encode(model, anchor_prompts)
    t = max(ct.tokens.shape[1], ca.tokens.shape[1])
    xt, xa = (F.pad(c.tokens.float(), (0, 0, 0, t - c.tokens.shape[1])) for c in (ct, ca))
    mt, ma = (F.pad(c.mask, (0, t - c.mask.shape[1])) for c in (ct, ca))
    both = (mt & ma).float()                                    # (N, T)
    diff = (xt - xa) * both[..., None]                          # (N, T, C)
    return diff.sum(0) / both.sum(0).clamp_min(1.0)[:, None]    # (T, C)


def add_direction(cond: Condition, direction: Tensor, eta: float) -> Condition:
    """``cond`` with ``eta * direction`` added to its real tokens (positions < ``direction``'s length)."""
    t = cond.tokens.shape[1]
    d = direction[:t].to(cond.tokens)
    if d.shape[0] < t:
        d = F.pad(d, (0, 0, 0, t - d.shape[0]))
    return Condition(cond.tokens + eta * d[None] * cond.mask[..., None], cond.mask, cond.prompts, cond.is_null)


def concept_vector_attack(model, target: AttackTarget, setup: AttackSetup, cfg: ConceptVectorConfig | None = None,
                          direction: Tensor | None = None, pairs: tuple[Sequence[str], Sequence[str]] | None = None
                          ) -> AttackResult:
    """Add the concept direction to ``setup.prompts`` and search eta against ``target``.

    Args:
        direction: a precomputed :func:`concept_direction`; otherwise computed from ``pairs``
            ``(concept prompts, anchor prompts)``, by default ``(setup.concept_prompts, setup.prompts)``.
    Steps: 1. direction; 2. every eta in order is one query per start prompt, scored on the search seeds
    (mean detector score); 3. the eta with the best search score among the first b tried is judged on the
    evaluation seeds (the ASR-vs-queries curve; b = all gives the result).
    """
    cfg = cfg or ConceptVectorConfig()
    cfg.validate()
    keys = list(setup.prompts)
    clock = Stopwatch()
    with clock:
        if direction is None:
            cps, aps = pairs if pairs is not None else (setup.concept_prompts, setup.prompts)
            direction = concept_direction(model, cps, aps)
        search = []
        for eta in cfg.etas:
            att = judge_attempts(model, target, setup, lambda ks, e=eta: add_direction(encode(model, ks), direction, e),
                                 keys, seeds=setup.search_seeds)
            search.append(float(att.scores.mean()))
    evals = {}

    def at(i: int):
        if i not in evals:
            e = cfg.etas[i]
            evals[i] = judge_attempts(model, target, setup, lambda ks: add_direction(encode(model, ks), direction, e),
                                      keys, [f"{k} + {e:g} x concept vector" for k in keys])
        return evals[i]

    curve = []
    best = 0
    for b in range(1, len(cfg.etas) + 1):
        best = max(range(b), key=lambda i: (search[i], -i))
        curve.append(CurvePoint(b, at(best).asr))
    unattacked = judge_attempts(model, target, setup, lambda ks: encode(model, ks), keys)
    found = [{"start": k, "eta": cfg.etas[best]} for k in keys]
    n_q = len(cfg.etas) * len(keys)
    eta = cfg.etas[best]
    res = finish("concept-vector", target, {"unit": "queries", "per_prompt": len(cfg.etas)}, at(best), unattacked,
                  {"queries": n_q, "gradient_steps": 0, "seconds": round(clock.seconds, 2)}, curve, found,
                  eta=cfg.etas[best], search_scores=dict(zip(map(str, cfg.etas), search)), config=asdict(cfg),
                  direction_norm=float(direction.norm(dim=-1).mean()))
    res.attacked = lambda idx: add_direction(encode(model, [keys[i] for i in idx]), direction, eta)
    return res
