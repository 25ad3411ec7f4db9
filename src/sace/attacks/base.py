"""What every attack shares: the attacked target, the judge that flags images, the attack budget and the
typed result with its success rate, cost and ASR-vs-budget curve.

ASR (attack success rate) = fraction of attack attempts (start prompt x evaluation seed) whose image the
detector flags as the concept (``shared/docs/related-work.md`` §6: the field's ASR on Ring-A-Bell,
MMA-Diffusion and UnlearnDiffAtk prompts). Every attack searches on its own *search seeds* and is scored on
disjoint *evaluation seeds*, so a found prompt or condition has to generalise over the sampling noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..adapters import adapter_set
from ..concepts.judge import Judge
from ..errors import SaceError
from ..generate import generate
from ..models.base import Condition
from ..sampling import SamplingSettings

__all__ = ["AttackTarget", "AttackSetup", "AttackResult", "Attempts", "CurvePoint", "Stopwatch"]


@dataclass
class AttackTarget:
    """The model under attack: which adapters are switched on and what the guidance's unconditional side is.

    Attributes:
        name: row label (``"original"``, ``"SACE"``, ``"negative prompt"`` ...).
        adapters: adapter names attached to the model that this target switches on (all others off).
        negative_prompt: encoded as the guidance's unconditional side (the negative-prompt baseline).
        cost: the cost of producing the target (training seconds, steps), for reports.
    """

    name: str
    adapters: list[str] = field(default_factory=list)
    negative_prompt: str | None = None
    cost: dict = field(default_factory=dict)

    def active(self, model):
        """Context: exactly this target's adapters switched on (the previous states after it)."""
        return adapter_set(model).only(self.adapters)

    def uncond(self, model, rows: int) -> Condition | None:
        """The unconditional side for ``rows`` rows (``None``: the model's null condition)."""
        if self.negative_prompt is None:
            return None
        return model.encode_prompts([self.negative_prompt] * rows)


@dataclass
class AttackSetup:
    """Everything that must be the same for every attack and every target of one comparison.

    Attributes:
        prompts: the attack's start prompts (one attempt per prompt and evaluation seed).
        concept_prompts: the concept prompt c* paired with each start prompt (white-box targets, the
            concept direction); same length as ``prompts``.
        eval_seeds: seeds the final ASR is measured on; ``search_seeds``: seeds queries are scored on.
        judge: the concept's :class:`~sace.concepts.judge.Judge` (its ``score`` is what black-box attacks
            maximise, its ``flag`` what ASR counts). settings: sampling settings (default: the model's).
        batch_size: images per sampling pass.
    """

    prompts: list[str]
    concept_prompts: list[str]
    eval_seeds: list[int]
    search_seeds: list[int]
    judge: Judge
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.prompts:
            raise SaceError("an attack needs at least one start prompt")
        if len(self.concept_prompts) != len(self.prompts):
            raise SaceError(f"{len(self.prompts)} start prompts but {len(self.concept_prompts)} concept prompts; "
                            "pair them one to one")
        if not self.eval_seeds or not self.search_seeds:
            raise SaceError("an attack needs at least one evaluation seed and one search seed")


@dataclass
class CurvePoint:
    """ASR on the evaluation seeds after ``budget`` units of the attack's budget (queries or steps)."""

    budget: int
    asr: float


@dataclass
class Attempts:
    """The images of one evaluation: rows = start prompt x evaluation seed (prompt-major)."""

    images: Tensor          # (P*S, 3, H, W) float in [0, 1]
    flags: Tensor           # (P*S,) bool
    scores: Tensor          # (P*S,) float
    labels: list[str]       # per row: what was fed to the model (prompt text or a description)

    @property
    def asr(self) -> float:
        return float(self.flags.float().mean()) if self.flags.numel() else float("nan")


@dataclass
class AttackResult:
    """The outcome of one attack against one target.

    Attributes:
        attack, target: names. budget: the stated budget (``{"unit": "queries", "per_prompt": 32}`` ...).
        asr: final ASR on the evaluation seeds; ``asr_unattacked``: the same prompts and seeds without the
            attack (the start prompts as they are).
        attempts: number of attempts (prompts x evaluation seeds); ``successes``: flagged ones.
        cost: ``{"queries", "gradient_steps", "seconds"}`` spent by the attack (not by its measurement).
        curve: ASR vs budget. found: per start prompt what the attack produced (prompt strings, eta, soft
            condition summary). success_images: ``(n, 3, H, W)`` flagged attack images (for grids).
        attacked: start prompt indices -> the attacked condition (see the field's comment).
    """

    attack: str
    target: str
    budget: dict
    asr: float
    asr_unattacked: float
    attempts: int
    successes: int
    cost: dict
    curve: list[CurvePoint]
    found: list[dict]
    success_images: Tensor | None = None
    success_labels: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    #: the attacked condition of start prompts ``idx`` (indices into the setup's prompts), for attacks that
    #: change the condition (soft, vector, discrete, inversion; ``None`` otherwise): what localisation applies
    #: per scale. Not serialised.
    attacked: Callable[[Sequence[int]], Condition] | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, d: dict) -> AttackResult:
        """The inverse of :meth:`to_dict` (without the images), e.g. to tabulate saved ``metrics.json`` files."""
        core = {"attack", "target", "budget", "asr", "asr_unattacked", "attempts", "successes", "cost", "curve",
                "found"}
        return cls(d["attack"], d["target"], d["budget"], d["asr"], d["asr_unattacked"], d["attempts"],
                   d["successes"], d["cost"], [CurvePoint(p["budget"], p["asr"]) for p in d["curve"]], d["found"],
                   extra={k: v for k, v in d.items() if k not in core})

    def to_dict(self) -> dict:
        return {"attack": self.attack, "target": self.target, "budget": self.budget, "asr": self.asr,
                "asr_unattacked": self.asr_unattacked, "attempts": self.attempts, "successes": self.successes,
                "cost": self.cost, "curve": [{"budget": p.budget, "asr": p.asr} for p in self.curve],
                "found": self.found, **self.extra}


class Stopwatch:
    """Wall time of the attack's own work, excluding its measurement (curve points, final scoring)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t: float | None = None

    def __enter__(self) -> Stopwatch:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - (self._t or time.perf_counter())
        self._t = None


def images_for(model, target: AttackTarget, setup: AttackSetup, cond_fn: Callable[[list[str]], Condition],
               keys: Sequence[str], seeds: Sequence[int]) -> Tensor:
    """Generate one image per (key, seed) pair with the target: ``cond_fn(keys)`` builds the conditions
    (``keys`` are prompt strings, or any strings ``cond_fn`` understands). Returns ``(N, 3, H, W)``."""
    uncond = None if target.negative_prompt is None else (lambda ks: target.uncond(model, len(ks)))
    with target.active(model):
        return generate(model, list(keys), list(seeds), settings=setup.settings, batch_size=setup.batch_size,
                        conditions_fn=cond_fn, uncond_fn=uncond)


def judge_attempts(model, target: AttackTarget, setup: AttackSetup, cond_fn: Callable[[list[str]], Condition],
                   keys: Sequence[str], labels: Sequence[str] | None = None,
                   seeds: Sequence[int] | None = None) -> Attempts:
    """Images of every key at every seed (evaluation seeds by default), scored and flagged."""
    seeds = list(setup.eval_seeds if seeds is None else seeds)
    ks = [k for k in keys for _ in seeds]
    ss = [s for _ in keys for s in seeds]
    with torch.no_grad():
        imgs = images_for(model, target, setup, cond_fn, ks, ss)
        flags = setup.judge.flag(imgs).bool().cpu()
        scores = setup.judge.score(imgs).float().cpu()
    labs = [lab for lab in (labels or keys) for _ in seeds]
    return Attempts(imgs, flags, scores, labs)


def finish(attack: str, target: AttackTarget, budget: dict, final: Attempts, unattacked: Attempts,
           cost: dict, curve: list[CurvePoint], found: list[dict], max_images: int = 16, **extra) -> AttackResult:
    """Assemble an :class:`AttackResult` from the final and the unattacked evaluations."""
    idx = final.flags.nonzero().flatten()[:max_images]
    return AttackResult(attack, target.name, budget, final.asr, unattacked.asr, int(final.flags.numel()),
                        int(final.flags.sum()), cost, curve, found,
                        final.images[idx] if idx.numel() else None, [final.labels[i] for i in idx.tolist()],
                        extra)


def encode(model, prompts: Sequence[str]) -> Condition:
    """The model's continuous encoding of prompt strings (the unattacked condition): text states ``(B, L, C)``
    for a text-conditional family, class embeddings ``(B, 1, C)`` for a class-conditional one
    (:meth:`~sace.models.base.ScaleWiseModel.continuous_condition`); either gives the same images as the
    prompts."""
    return model.continuous_condition(model.encode_prompts(list(prompts)))
