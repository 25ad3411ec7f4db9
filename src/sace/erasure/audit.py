"""The pre-training audit of a concept's prompt sets (``sace audit``; run by ``sace erase`` before training).

SACE trusts its prompt sets: the anchors c are what the target prompts c* are pulled towards, and the
entangled and retain prompts are what L_pre keeps unchanged. If an anchor prompt itself draws the concept
(e.g. "a photo of a pair of dress" draws trousers), L_ER teaches concept -> concept; if a preservation
prompt draws it, L_pre preserves the concept; either way training ends with a low loss and nothing erased.
The audit asks the frozen model: it generates ``images_per_prompt`` images of every (distinct) prompt of the
four sets and scores them with the model's concept detector, then

* anchors whose concept rate is >= ``anchor_max_rate`` -> :class:`AuditError` listing them with their rates;
* entangled / retain prompts whose rate is >= ``preserve_max_rate`` -> dropped from the concept, with a note;
* targets whose mean rate is < ``target_min_rate`` -> a warning (there is little to erase).

The concept's judge (:func:`sace.domains.judge_for`, the one ``--detector`` policy) flags the images: the
model domain's classifier (fashion: top-1 class = the concept's class), the preset's detector (NudeNet: >= 1
exposed detection at its threshold; the ImageNet classifier for the object presets), or a user callable
``images -> (B,) or (B, 1) scores in [0, 1]`` (``score >= 0.5`` counts). Where the model has no detector for
the concept the audit says so and checks nothing (:attr:`AuditResult.detector` is ``None``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from .. import domains
from ..concepts.judge import Judge, NoDetector
from ..concepts.spec import ConceptSpec, has_context_prompts
from ..errors import SaceError
from ..generate import generate


class AuditError(SaceError):
    """An anchor prompt draws the concept it is meant to replace (the message lists them with rates)."""


@dataclass
class AuditConfig:
    """How much the audit generates and where it draws the lines (rates are fractions of images)."""

    images_per_prompt: int = 4
    max_prompts: int = 16                # per set; evenly spaced over the distinct prompts
    anchor_max_rate: float = 0.5
    preserve_max_rate: float = 0.5
    target_min_rate: float = 0.5
    seed: int = 0
    batch_size: int = 128


@dataclass
class AuditResult:
    """What the audit measured. ``sets[name]``: mean concept rate and per-prompt rates of each set;
    ``bad_anchors`` / ``dropped``: ``(prompt, rate)`` pairs; ``ok``: no bad anchor."""

    concept: str
    detector: str | None
    rule: str = ""
    sets: dict[str, dict] = field(default_factory=dict)
    bad_anchors: list[tuple[str, float]] = field(default_factory=list)
    dropped: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0

    @property
    def ok(self) -> bool:
        return not self.bad_anchors

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def lines(self) -> list[str]:
        """Human-readable summary, one line per finding."""
        if self.detector is None:
            return [f"audit: {self.notes[0] if self.notes else 'no detector'}"]
        out = [f"audit of '{self.concept}' with {self.detector} ({self.rule}; {self.images} images, "
               f"{self.seconds:.1f} s): " + ", ".join(f"{k} {v['rate']:.2f}" for k, v in self.sets.items())]
        if self.bad_anchors:
            out.append("anchors that draw the concept: " + "; ".join(f"{p!r} {r:.2f}" for p, r in self.bad_anchors))
        for k, items in self.dropped.items():
            if items:
                out.append(f"dropped {len(items)} {k} prompt(s) that draw the concept: "
                           + "; ".join(f"{p!r} {r:.2f}" for p, r in items))
        out += [f"warning: {w}" for w in self.warnings]
        return out


def unchecked(reason: NoDetector | str) -> str:
    """The note of an audit or check that had no judge: the reason, and that nothing was checked."""
    return f"{reason}: the prompt sets were NOT checked (give --detector or a detector callable to audit them)"


def judge_or_note(model, concept: ConceptSpec, detector="auto") -> tuple[Judge | None, str]:
    """``(judge, "")`` of :func:`sace.domains.judge_for`, or ``(None, note)`` when there is no detector.

    Raises:
        SaceError: an unknown detector name; a named detector that cannot judge the concept.
    """
    try:
        return domains.judge_for(model, concept, detector), ""
    except NoDetector as e:
        return None, unchecked(e)


def spread(prompts: Sequence[str], k: int) -> list[str]:
    """At most ``k`` of the distinct ``prompts``, evenly spaced over the list (all of them when there are at
    most ``k``); used to sample a prompt set and to pick ``--gate auto``'s ISSA pairs."""
    ps = list(dict.fromkeys(prompts))
    if len(ps) <= k:
        return ps
    step = len(ps) / k
    return [ps[int(i * step)] for i in range(k)]


@torch.no_grad()
def concept_rates(model, prompts: Sequence[str], judge: Judge, images_per_prompt: int, seed: int = 0,
                  batch_size: int = 128, settings=None) -> list[float]:
    """Fraction of ``images_per_prompt`` images (seeds ``seed .. seed + n - 1``) per prompt that the judge
    flags, with the model as it is now (adapters included)."""
    if not prompts:
        return []
    ps = [p for p in prompts for _ in range(images_per_prompt)]
    seeds = [seed + j for _ in prompts for j in range(images_per_prompt)]
    imgs = generate(model, ps, seeds, settings=settings, batch_size=batch_size)
    hit = judge.flag(imgs).float().reshape(len(prompts), images_per_prompt)
    return [round(float(v), 4) for v in hit.mean(1)]


def audit_concept(model, concept: ConceptSpec, detector: str | Callable | None = "auto",
                  config: AuditConfig | None = None, judge: Judge | None = None,
                  progress: bool = False, raise_on_error: bool = True) -> tuple[AuditResult, ConceptSpec]:
    """Audit ``concept``'s prompt sets on ``model`` as it is (the frozen teacher of training: adapters
    attached before the new one are part of it).

    Args:
        detector: the ``--detector`` choice (:func:`sace.domains.judge_for`); ``judge``: an already chosen judge.
        raise_on_error: raise :class:`AuditError` when anchors draw the concept (else only ``result.ok`` is
            False).
    Returns:
        ``(result, cleaned concept)``: the concept without the entangled / retain prompts that draw it.
        Without a detector the concept is returned unchanged and ``result.detector`` is ``None``.
    Raises:
        AuditError: anchors draw the concept (message names each with its rate; fix: another --anchor).
    """
    cfg = config or AuditConfig()
    if judge is None:
        judge, why = judge_or_note(model, concept, detector)
        if judge is None:
            return AuditResult(concept.name, None, notes=[why]), concept
    t0 = time.perf_counter()
    res = AuditResult(concept.name, judge.name, judge.rule)
    # the sets training uses (no entangled set on a class-conditional model, as in SACEObjective)
    sets = {"anchors": concept.anchors, "targets": concept.targets,
            "entangled": concept.entangled if has_context_prompts(model) else [], "retain": concept.retain}
    rates: dict[str, dict[str, float]] = {}
    it = sets.items()
    if progress:
        it = tqdm(list(it), desc=f"audit {concept.name}")
    for name, prompts in it:
        # anchors are checked in full (a single bad one must not slip through); the others are sampled
        chosen = list(dict.fromkeys(prompts)) if name == "anchors" else spread(prompts, cfg.max_prompts)
        r = concept_rates(model, chosen, judge, cfg.images_per_prompt, cfg.seed, cfg.batch_size)
        rates[name] = dict(zip(chosen, r))
        res.images += len(chosen) * cfg.images_per_prompt
        if chosen:
            res.sets[name] = {"rate": round(sum(r) / len(r), 4), "n_prompts": len(chosen), "prompts": rates[name]}
    res.bad_anchors = [(p, r) for p, r in rates["anchors"].items() if r >= cfg.anchor_max_rate]
    drop = {k: [(p, r) for p, r in rates[k].items() if r >= cfg.preserve_max_rate] for k in ("entangled", "retain")}
    res.dropped = {k: v for k, v in drop.items() if v}
    clean = replace(concept, entangled=[p for p in concept.entangled if p not in dict(drop["entangled"])],
                    retain=[p for p in concept.retain if p not in dict(drop["retain"])])
    for k, v in res.dropped.items():
        res.notes.append(f"dropped {len(v)} {k} prompt(s) that draw '{concept.name}'")
    t_rate = res.sets.get("targets", {}).get("rate", 1.0)
    if t_rate < cfg.target_min_rate:
        low = [p for p, r in rates["targets"].items() if r < cfg.target_min_rate]
        res.warnings.append(f"the frozen model draws '{concept.name}' for only {t_rate:.0%} of the target images "
                            f"(e.g. {', '.join(repr(p) for p in low[:3])}): there is little to erase; check the "
                            f"targets or the detector")
    res.seconds = round(time.perf_counter() - t0, 2)
    if not res.ok and raise_on_error:
        err = AuditError(
            f"audit of '{concept.name}': {len(res.bad_anchors)} anchor prompt(s) draw the concept itself "
            f"(concept rate >= {cfg.anchor_max_rate:.2f}): "
            + "; ".join(f"{p!r} ({r:.2f})" for p, r in res.bad_anchors[:6])
            + ("; ..." if len(res.bad_anchors) > 6 else "")
            + " -- choose another --anchor (or pass --no-audit to train anyway)")
        err.result = res
        raise err
    return res, clean
