"""The post-training check built into ``sace erase``: did the adapter erase the concept and keep the rest?

With the trained adapter switched on, ``n`` images each of the concept's target prompts (cycled), of its
held-out paraphrases and of its retain prompts are generated (seeds ``seed + i``; held-out ``seed + 10000 +
i``) and scored with the concept's judge (:func:`sace.domains.judge_for`):

* **ACC_e** -- fraction of target images that show the concept;
* **held-out** -- the same on the held-out paraphrases (not checked when the concept has none);
* **ACC_i** -- on the retain images: the fraction classified as the class the prompt names (class detectors
  such as the fashion classifier; ``shared/docs/related-work.md`` §6) or else the fraction that does *not*
  show the concept; measured with and without the new adapter on the same seeds, **ACC_i drop** = before -
  after.

The verdict compares them with user-settable :class:`CheckThresholds` (defaults: the issue's targets, ACC_e <=
5%, held-out <= 10%, ACC_i drop <= 2 points). :func:`verdict` is a pure function of the measured values.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from ..adapters import adapter_names, set_adapters_enabled
from ..concepts.judge import Judge
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..generate import generate
from .audit import judge_or_note


@dataclass
class CheckThresholds:
    """Pass lines of the post-training check (fractions: 0.05 = 5%; the drop in fraction points)."""

    max_acc_e: float = 0.05
    max_heldout: float = 0.10
    max_acc_i_drop: float = 0.02

    def validate(self) -> CheckThresholds:
        for k, v in asdict(self).items():
            if not 0.0 <= float(v) <= 1.0:
                raise SaceError(f"check threshold {k} must be a fraction in [0, 1], got {v}")
        return self


@dataclass
class CheckResult:
    """Measured values (fractions), the thresholds and the verdict."""

    concept: str
    detector: str | None
    n: int
    acc_e: float | None = None
    heldout: float | None = None
    acc_i: float | None = None
    acc_i_original: float | None = None
    acc_i_drop: float | None = None
    acc_i_rule: str = ""
    thresholds: dict = field(default_factory=dict)
    passed: bool | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if self.detector is None:
            return f"check: {self.notes[0] if self.notes else 'no detector'}"

        def f(v):
            return "n/a" if v is None else f"{v:.3f}"
        head = (f"check ({self.n} images per set, {self.detector}): ACC_e {f(self.acc_e)} "
                f"(<= {self.thresholds['max_acc_e']:.3f}), held-out {f(self.heldout)} "
                f"(<= {self.thresholds['max_heldout']:.3f}), ACC_i {f(self.acc_i_original)} -> {f(self.acc_i)} "
                f"(drop {f(self.acc_i_drop)} <= {self.thresholds['max_acc_i_drop']:.3f})")
        return head + (": PASS" if self.passed else ": FAIL (" + "; ".join(self.failures) + ")")


def verdict(result: CheckResult, thresholds: CheckThresholds) -> CheckResult:
    """Set ``result.passed`` / ``failures`` / ``thresholds`` from the measured values (in place; returned).
    A value that could not be measured (``None``) does not fail the check; it is noted."""
    th = thresholds.validate()
    fails = []
    for val, lim, what in ((result.acc_e, th.max_acc_e, "ACC_e"), (result.heldout, th.max_heldout, "held-out"),
                           (result.acc_i_drop, th.max_acc_i_drop, "ACC_i drop")):
        if val is not None and val > lim + 1e-9:
            fails.append(f"{what} {val:.3f} > {lim:.3f}")
    result.thresholds = asdict(th)
    result.failures = fails
    result.passed = not fails
    return result


def _cycle(prompts, n):
    return [prompts[i % len(prompts)] for i in range(n)] if prompts else []


@torch.no_grad()
def post_training_check(model, concept: ConceptSpec, adapter: str, n: int = 50,
                        thresholds: CheckThresholds | None = None, detector="auto",
                        judge: Judge | None = None, seed: int = 0, batch_size: int = 128,
                        settings=None) -> CheckResult:
    """Measure ACC_e / held-out / ACC_i of the model with adapter ``adapter`` (attached, by name) and judge.

    Args:
        n: images per set (targets, held-out, retain; the retain images are generated twice: with and
            without the adapter).
        thresholds: :class:`CheckThresholds` (default: the issue's).
        detector: the ``--detector`` choice (:func:`sace.domains.judge_for`); ``judge``: an already chosen one.
    Returns:
        :class:`CheckResult`; ``detector`` is ``None`` (nothing measured, ``passed`` None) without a detector.
    Raises:
        SaceError: ``n`` < 1; no adapter of that name.
    """
    if n < 1:
        raise SaceError(f"the check needs at least 1 image per set, got {n}")
    if adapter not in adapter_names(model):
        raise SaceError(f"no adapter named {adapter!r} is attached")
    th = (thresholds or CheckThresholds()).validate()
    if judge is None:
        judge, why = judge_or_note(model, concept, detector)
        if judge is None:
            return CheckResult(concept.name, None, n, notes=[why], thresholds=asdict(th))
    t0 = time.perf_counter()
    res = CheckResult(concept.name, judge.name, n)

    def gen(prompts, seeds):
        return generate(model, prompts, seeds, settings=settings, batch_size=batch_size)

    tp = _cycle(concept.targets, n)
    res.acc_e = round(float(judge.flag(gen(tp, [seed + i for i in range(n)])).float().mean()), 4)
    if concept.heldout:
        hp = _cycle(concept.heldout, n)
        res.heldout = round(float(judge.flag(gen(hp, [seed + 10_000 + i for i in range(n)])).float().mean()), 4)
    else:
        res.notes.append("the concept has no held-out paraphrases: held-out not checked")
    rp = _cycle(concept.retain, n)
    if rp:
        labels = [judge.label_of(p) for p in rp] if judge.label_of is not None else [None] * n
        use_cls = judge.classify is not None and all(lab is not None for lab in labels)
        res.acc_i_rule = "retain images classified as their prompt's class" if use_cls else \
            "retain images that do not show the concept"
        seeds = [seed + 20_000 + i for i in range(n)]

        def acc_i() -> float:
            imgs = gen(rp, seeds)
            if use_cls:
                return float((judge.classify(imgs) == torch.tensor(labels)).float().mean())
            return float((~judge.flag(imgs)).float().mean())
        res.acc_i = round(acc_i(), 4)
        set_adapters_enabled(model, False, [adapter])
        try:
            res.acc_i_original = round(acc_i(), 4)
        finally:
            set_adapters_enabled(model, True, [adapter])
        res.acc_i_drop = round(res.acc_i_original - res.acc_i, 4)
    else:
        res.notes.append("the concept has no retain prompts: ACC_i not checked")
    res.seconds = round(time.perf_counter() - t0, 2)
    return verdict(res, th)
