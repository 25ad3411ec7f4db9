"""The post-training check built into ``sace erase``: did the adapter erase the concept and keep the rest?

What is measured and how it is decided is defined once, in :mod:`sace.evaluation.decision` (shared with
``sace evaluate`` and ``benchmarks/erase_every_class.py``): **ACC_e** on the concept's target prompts,
**held-out** on its held-out paraphrases, **ACC_i drop** on retain images generated with and without the
adapter on the same prompts and seeds (paired), each with a confidence interval and a verdict PASS / FAIL /
not decided.

The images (:func:`check_items`), at ``n`` images per set:

* targets: the concept's target prompts cycled, seeds ``seed + i``; held-out: its paraphrases cycled, seeds
  ``seed + 10000 + i``;
* retain: on a model whose domain has classes (``fashion``, ``fashion-var``) ``n // 2`` images of every class
  but the concept -- the anchor included -- from the domain's evaluation set (the training captions of each
  class, seeds ``seed + i``; the same images ``sace evaluate`` and the benchmark score); on other models
  ``9 * (n // 2)`` images cycling over the concept's retain prompts, seeds ``seed + 20000 + i``.

The design is sequential (:class:`~sace.evaluation.decision.Design`): the figures are computed at ``n =
looks[0]``; while some figure is not decided and a larger look remains, the missing images are added (images
already scored are kept) and the figures recomputed, each look at level ``1 - alpha / len(looks)`` so that the
stated error rates hold over the whole run. ``--check-images auto`` = looks (100, 200, 400, 800); an integer =
one look at that ``n``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from .. import domains
from ..adapters import adapter_names, set_adapters_enabled
from ..concepts.items import EvalItem
from ..concepts.judge import Judge
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..evaluation import decision as dec
from ..generate import generate
from .audit import judge_or_note

CheckThresholds = dec.Thresholds
"""The check's pass lines (:class:`sace.evaluation.decision.Thresholds`; the name ``sace erase`` documents)."""

RETAIN_GROUPS = 9
"""Retain images per look on a model without classes: as many as the nine other fashion classes get."""

AUTO_DESIGN = dec.Design()
"""``--check-images auto``: looks at 100, 200, 400, 800 images per set, alpha 0.10 (see
:mod:`sace.evaluation.decision`)."""


@dataclass
class CheckResult:
    """Measured values (fractions), their intervals (``figures``), the thresholds and the verdict.

    ``verdict``: ``PASS``, ``FAIL`` or ``not decided``; ``passed`` is True only for PASS (False for FAIL and not
    decided; None when nothing was measured). ``n``: images per set at the last look; ``images``: images
    generated in all (retain images twice); ``looks``: the design's looks; ``alpha``: its overall level;
    ``seconds`` / ``cpu_seconds``: wall and process CPU time of the check."""

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
    cpu_seconds: float = 0.0
    figures: list[dict] = field(default_factory=list)
    verdict: str = ""
    looks: list[int] = field(default_factory=list)
    alpha: float | None = None
    images: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def figure_objects(self) -> list[dec.Figure]:
        return [dec.Figure(**f) for f in self.figures]

    def line(self) -> str:
        """One line: the images, every figure with its interval and verdict, and the overall verdict."""
        if self.detector is None:
            return f"check: {self.notes[0] if self.notes else 'no detector'}"
        if not self.figures:       # a result stored by an older sace (point values only)
            return self._legacy_line()
        level = f"{100 * (1 - (self.alpha or 0.1)):.0f}%"
        head = (f"check ({self.n} images per set, {self.images} generated, {self.detector}, {level} intervals over "
                f"{len(self.looks)} look(s)): " + "; ".join(f.text() for f in self.figure_objects()))
        if self.acc_i_original is not None:
            head += f" (ACC_i {self.acc_i_original:.3f} -> {self.acc_i:.3f})"
        if self.verdict == dec.PASS:
            return head + ": PASS"
        if self.verdict == dec.FAIL:
            return head + ": FAIL (" + "; ".join(self.failures) + ")"
        # each figure's "more" is in its own unit (retain pairs are 4.5 per set image): per set here
        more = [None if f.more is None else -(-f.more * self.n // f.n)
                for f in self.figure_objects() if f.verdict == dec.UNDECIDED]
        hint = (f"about {max(more)} more images per set would decide it" if more and all(more)
                else "a figure sits at its line: more images will not decide it")
        return head + f": not decided with {self.n} images per set ({hint})"

    def _legacy_line(self) -> str:
        def f(v):
            return "n/a" if v is None else f"{v:.3f}"
        head = (f"check ({self.n} images per set, {self.detector}): ACC_e {f(self.acc_e)} "
                f"(<= {self.thresholds['max_acc_e']:.3f}), held-out {f(self.heldout)} "
                f"(<= {self.thresholds['max_heldout']:.3f}), ACC_i {f(self.acc_i_original)} -> {f(self.acc_i)} "
                f"(drop {f(self.acc_i_drop)} <= {self.thresholds['max_acc_i_drop']:.3f})")
        return head + (": PASS" if self.passed else ": FAIL (" + "; ".join(self.failures) + ")")


def verdict(result: CheckResult, thresholds: CheckThresholds) -> CheckResult:
    """Set ``passed`` / ``verdict`` / ``failures`` / ``thresholds`` (in place; returned).

    With ``figures`` (intervals), from their verdicts against these thresholds; without (point values only,
    e.g. a result written by an older sace): a value above its line fails. A value that was not measured does
    not fail the check."""
    th = thresholds.validate()
    result.thresholds = asdict(th)
    if result.figures:
        lines = {"ACC_e": th.max_acc_e, "held-out": th.max_heldout, "ACC_i drop": th.max_acc_i_drop}
        figs = [f.against(lines[f.name]) if f.name in lines and f.threshold != lines[f.name] else f
                for f in result.figure_objects()]
        result.figures = [asdict(f) for f in figs]
        result.failures = [f"{f.name} {f.estimate:.3f} [{f.lower:.3f}, {f.upper:.3f}] > {f.threshold:.3f}"
                           for f in figs if f.verdict == dec.FAIL]
        result.verdict = dec.overall(figs)
    else:
        result.failures = [f"{what} {val:.3f} > {lim:.3f}" for val, lim, what in (
            (result.acc_e, th.max_acc_e, "ACC_e"), (result.heldout, th.max_heldout, "held-out"),
            (result.acc_i_drop, th.max_acc_i_drop, "ACC_i drop")) if val is not None and val > lim + 1e-9]
        result.verdict = dec.FAIL if result.failures else dec.PASS
    result.passed = result.verdict == dec.PASS
    return result


def _cycle(prompts, n, seed0, group, label=None) -> list[EvalItem]:
    return [EvalItem(prompts[i % len(prompts)], seed0 + i, label, group) for i in range(n)] if prompts else []


def check_items(model, concept: ConceptSpec, n: int, seed: int = 0) -> list[EvalItem]:
    """The check's images at ``n`` images per set (groups ``target``, ``heldout``, ``retain``); see the module
    docstring. Items of a smaller ``n`` are a subset of those of a larger one (what the sequential design adds
    is only the difference)."""
    items = _cycle(concept.targets, n, seed, "target") + _cycle(concept.heldout, n, seed + 10_000, "heldout")
    try:
        other = [it for it in domains.for_model(model).eval_items(concept, max(1, n // 2), 0, seed0=seed)
                 if it.group == "other" and it.label is not None]
    except SaceError:          # a concept the domain has no evaluation set for (a merged or free concept)
        other = []
    if other:
        return items + [EvalItem(it.prompt, it.seed, it.label, "retain") for it in other]
    return items + _cycle(concept.retain, RETAIN_GROUPS * max(1, n // 2), seed + 20_000, "retain")


def _key(it: EvalItem) -> tuple:
    return it.group, it.prompt, it.seed


@torch.no_grad()
def post_training_check(model, concept: ConceptSpec, adapter: str, n: int | None = None,
                        thresholds: CheckThresholds | None = None, detector="auto",
                        judge: Judge | None = None, seed: int = 0, batch_size: int = 128,
                        settings=None, design: dec.Design | None = None) -> CheckResult:
    """Measure ACC_e / held-out / ACC_i drop of the model with adapter ``adapter`` (attached, by name), with
    intervals, and decide (sequentially unless ``n`` is given).

    Args:
        n: one look at ``n`` images per set (the fixed design); None: ``design`` (default
            :data:`AUTO_DESIGN`, ``--check-images auto``).
        thresholds: :class:`CheckThresholds` (default: ACC_e <= 5%, held-out <= 10%, drop <= 2 points).
        detector: the ``--detector`` choice (:func:`sace.domains.judge_for`); ``judge``: an already chosen one.
    Returns:
        :class:`CheckResult`; ``detector`` is ``None`` (nothing measured, ``passed`` None) without a detector.
    Raises:
        SaceError: ``n`` < 1; no adapter of that name.
    """
    if n is not None and n < 1:
        raise SaceError(f"the check needs at least 1 image per set, got {n}")
    if adapter not in adapter_names(model):
        raise SaceError(f"no adapter named {adapter!r} is attached")
    design = dec.Design.fixed(n) if n is not None else (design or AUTO_DESIGN)
    th = (thresholds or CheckThresholds()).validate()
    if judge is None:
        judge, why = judge_or_note(model, concept, detector)
        if judge is None:
            return CheckResult(concept.name, None, design.looks[-1], notes=[why], thresholds=asdict(th))
    t0, c0 = time.perf_counter(), time.process_time()
    res = CheckResult(concept.name, judge.name, design.looks[0], looks=list(design.looks), alpha=design.alpha)
    seen: dict[tuple, bool] = {}          # (group, prompt, seed) -> outcome with the adapter
    before: dict[tuple, bool] = {}        # retain items -> outcome without it

    def outcomes(items: list[EvalItem]) -> torch.Tensor:
        imgs = generate(model, [it.prompt for it in items], [it.seed for it in items], settings=settings,
                        batch_size=batch_size)
        res.images += len(items)
        return dec.image_outcomes(judge, imgs, items)

    def figures_at(look: int, alpha: float) -> list[dec.Figure]:
        res.n = look
        items = check_items(model, concept, look, seed)
        new = [it for it in items if _key(it) not in seen]     # earlier looks' images are kept
        if new:
            for it, o in zip(new, outcomes(new).tolist()):
                seen[_key(it)] = o
            new_retain = [it for it in new if it.group == "retain"]
            if new_retain:
                set_adapters_enabled(model, False, [adapter])
                try:
                    for it, o in zip(new_retain, outcomes(new_retain).tolist()):
                        before[_key(it)] = o
                finally:
                    set_adapters_enabled(model, True, [adapter])
        groups = {g: [it for it in items if it.group == g] for g in ("target", "heldout", "retain")}
        return dec.erasure_figures([seen[_key(it)] for it in groups["target"]],
                                   [seen[_key(it)] for it in groups["heldout"]] or None,
                                   [before[_key(it)] for it in groups["retain"]] or None,
                                   [seen[_key(it)] for it in groups["retain"]] or None, th, alpha)

    figs, res.n = dec.decide_sequentially(design, figures_at)
    res.figures = [asdict(f) for f in figs]
    by = {f.name: f for f in res.figure_objects()}
    res.acc_e = round(by["ACC_e"].estimate, 4) if "ACC_e" in by else None
    if "held-out" in by:
        res.heldout = round(by["held-out"].estimate, 4)
    else:
        res.notes.append("the concept has no held-out paraphrases: held-out not checked")
    if "ACC_i drop" in by:
        d = by["ACC_i drop"]
        res.acc_i_original, res.acc_i = round(d.detail["acc_before"], 4), round(d.detail["acc_after"], 4)
        res.acc_i_drop = round(d.estimate, 4)
        res.acc_i_rule = ("retain images classified as their prompt's class" if judge.classify is not None
                          else "retain images that do not show the concept")
    else:
        res.notes.append("the concept has no retain prompts: ACC_i not checked")
    res.seconds = round(time.perf_counter() - t0, 2)
    res.cpu_seconds = round(time.process_time() - c0, 2)     # on a shared machine: the cost alone
    return verdict(res, th)
