"""The decision rule behind every erasure verdict: ACC_e, held-out and ACC_i drop with confidence intervals,
and PASS / FAIL / not decided -- so that one image no longer flips a verdict.

One definition, used by ``sace erase``'s post-training check (:mod:`sace.erasure.check`), ``sace evaluate``
(:mod:`sace.evaluation.harness`) and ``benchmarks/erase_every_class.py``:

* **ACC_e** -- share of the concept's target-prompt images that the judge still calls the concept (a class
  judge: top-1 class is the concept's; any other judge: ``flag``). Pass line: ``<= max_acc_e``.
* **held-out** -- the same on the concept's held-out paraphrases. Pass line: ``<= max_heldout``.
* **ACC_i drop** -- on the retain images (every other class and the anchor; on other models the concept's
  retain prompts), each generated twice with the same prompt and seed, without and with the adapter:
  share correct before minus share correct after (a class judge: classified as the class the prompt names;
  else: not flagged). Pass line: ``<= max_acc_i_drop``. The two shares are *paired* (same prompt, same seed),
  so the difference is estimated from the 2x2 table of per-image outcomes, whose discordant cells are the
  only thing that moves it.

Intervals (two-sided, level ``1 - alpha_look``):

* a single share (ACC_e, held-out): the exact Clopper-Pearson interval (Clopper & Pearson 1934, Biometrika
  26:404; quantiles of the beta distribution, :func:`scipy.stats.beta.ppf`). Coverage is at least the
  nominal level for every true share.
* a paired difference (ACC_i drop): Newcombe's hybrid score interval for paired proportions, "method 10" of
  Newcombe 1998 (Statistics in Medicine 17:2635-2650; worked example in Altman et al., *Statistics with
  Confidence*, 2nd ed., 2000, p. 52): Wilson intervals (Wilson 1927, JASA 22:209) of the two marginal shares
  combined with the continuity-corrected correlation of the paired outcomes. Its coverage is close to the
  nominal level (Newcombe's simulations: mean coverage ~0.95 at 95%), not guaranteed.

Decision at one look: **PASS** when the whole interval lies at or below the pass line, **FAIL** when it lies
entirely above it, otherwise **not decided** (with the number of images that would decide it if the
observed shares held; :func:`more_needed`).

Error rates (:class:`Design`): the check looks at the data at most ``len(looks)`` times (a fixed, small number
of looks, e.g. 100, 200, 400, 800 images per class), and every look uses ``alpha_look = alpha / len(looks)``
(Bonferroni alpha spending, the simplest valid group-sequential design: by the union bound the true value
lies outside the interval at *some* look with probability <= ``alpha``). Hence, per figure, over the whole
sequential run: P(PASS although the true value is above the line) <= ``alpha / 2`` and P(FAIL although it is
at or below the line) <= ``alpha / 2`` (exactly so for the Clopper-Pearson figures, approximately for the
Newcombe one). With the default ``alpha = 0.10``: each direction at most 5% per figure; the verdict over
three figures is wrong with probability at most 15% in the worst case (union bound), typically far less,
since a true value far from its line is decided correctly almost surely.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.stats import beta, norm
from torch import Tensor

from ..concepts.items import EvalItem
from ..concepts.judge import Judge
from ..errors import SaceError

__all__ = ["PASS", "FAIL", "UNDECIDED", "Thresholds", "Design", "Figure", "wilson_interval",
           "clopper_pearson_interval", "paired_difference_interval", "rate_figure", "drop_figure",
           "erasure_figures", "overall", "more_needed", "decide_sequentially", "image_outcomes", "SHOWS_GROUPS"]

PASS, FAIL, UNDECIDED = "PASS", "FAIL", "not decided"


@dataclass
class Thresholds:
    """Pass lines (fractions: 0.05 = 5%; the drop in fraction points: 0.02 = 2 points)."""

    max_acc_e: float = 0.05
    max_heldout: float = 0.10
    max_acc_i_drop: float = 0.02

    def validate(self) -> Thresholds:
        """Raises SaceError for a line outside [0, 1]; returns self."""
        for k, v in asdict(self).items():
            if not 0.0 <= float(v) <= 1.0:
                raise SaceError(f"check threshold {k} must be a fraction in [0, 1], got {v}")
        return self


@dataclass(frozen=True)
class Design:
    """A sequential design: at most ``len(looks)`` looks, at ``looks[j]`` images per class (the check's unit:
    that many target and held-out images, and that many retain images per retain class), each look at level
    ``1 - alpha / len(looks)`` (see the module docstring for the error rates). A fixed-N check is the design
    with one look."""

    # a fourth look at 800 (issue 25): a true drop of 1-1.5 points -- coat on `fashion` -- stays undecided at 400
    # images per set (interval half-width ~0.9 points) and is decided at 800 (~0.6); cheap classes stop at 100
    looks: tuple[int, ...] = (100, 200, 400, 800)
    alpha: float = 0.10

    def __post_init__(self):
        if not self.looks or any(int(n) < 1 for n in self.looks) or list(self.looks) != sorted(set(self.looks)):
            raise SaceError(f"the looks of a sequential check must be increasing positive image counts, got "
                            f"{self.looks}")
        if not 0.0 < self.alpha < 1.0:
            raise SaceError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def alpha_look(self) -> float:
        """The two-sided error level of every look (Bonferroni: ``alpha / len(looks)``)."""
        return self.alpha / len(self.looks)

    @classmethod
    def fixed(cls, n: int, alpha: float = 0.10) -> Design:
        """One look at ``n`` images per class."""
        return cls((int(n),), alpha)


@dataclass
class Figure:
    """One measured figure with its interval and its verdict against its pass line.

    ``estimate``, ``lower``, ``upper``, ``threshold`` are fractions (the drop in fraction points); ``n`` the
    images (pairs for the drop) it rests on; ``more``: about how many more images (same unit as ``n``) would
    decide it if the observed shares held (None when decided, or when no count up to 64 x ``n`` would);
    ``detail``: the counts (hits; or the paired table and the two accuracies)."""

    name: str
    estimate: float
    lower: float
    upper: float
    threshold: float
    n: int
    verdict: str
    method: str
    more: int | None = None
    detail: dict = field(default_factory=dict)
    alpha: float | None = None

    def against(self, threshold: float) -> Figure:
        """The same measurement judged against another pass line (a new Figure; the interval is unchanged)."""
        if "table_abcd" in self.detail:
            return _drop_from_table(self.name, self.detail["table_abcd"], threshold, self.alpha)
        return rate_figure(self.name, self.detail["hits"], self.n, threshold, self.alpha)

    def text(self) -> str:
        """``"ACC_e 0.000 [0.000, 0.030] <= 0.050 PASS"``."""
        head = (f"{self.name} {self.estimate:.3f} [{self.lower:.3f}, {self.upper:.3f}] <= {self.threshold:.3f} "
                f"{self.verdict}")
        if self.verdict == UNDECIDED:
            unit = "pairs" if "table_abcd" in self.detail else "images"
            head += (f" (about {self.more} more {unit} would decide it)" if self.more
                     else " (at the line: more images will not decide it)")
        return head


SHOWS_GROUPS = ("target", "heldout")
"""Item groups whose outcome is "shows the concept" (ACC_e, held-out); every other group's is "correct"."""


def image_outcomes(judge: Judge, images: Tensor, items: Sequence[EvalItem]) -> Tensor:
    """The per-image outcome every figure counts (the one definition, see the module docstring).

    Args:
        judge: the concept's judge. images: ``(B, 3, H, W)`` float in [0, 1]. items: the B items (group,
            label).
    Returns:
        ``(B,)`` bool: for ``target``/``heldout`` items, the image shows the concept (``judge.flag``: for a
        class judge, top-1 class is the concept's); for any other item, the image is correct: classified as
        the item's class (its ``label``, else ``judge.label_of(prompt)``) when the judge classifies and the
        class is known, else not flagged.
    """
    if len(items) != images.shape[0]:
        raise SaceError(f"{len(items)} items but {images.shape[0]} images")
    shows = judge.flag(images).bool()
    labels = [it.label if it.label is not None else
              (judge.label_of(it.prompt) if judge.label_of is not None else None) for it in items]
    correct = ~shows
    if judge.classify is not None and any(lab is not None for lab in labels):
        lab = torch.tensor([-1 if x is None else int(x) for x in labels])
        correct = torch.where(lab >= 0, judge.classify(images).cpu() == lab, correct)
    concept_group = torch.tensor([it.group in SHOWS_GROUPS for it in items], dtype=torch.bool)
    return torch.where(concept_group, shows, correct)


def _check_counts(k: int, n: int) -> None:
    if n < 1 or k < 0 or k > n:
        raise SaceError(f"need 0 <= successes <= trials and trials >= 1, got {k} of {n}")


def wilson_interval(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) of a share ``k / n``, two-sided level ``1 - alpha``; fractions."""
    _check_counts(k, n)
    z = float(norm.ppf(1 - alpha / 2))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def clopper_pearson_interval(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval of a share ``k / n``, two-sided level ``1 - alpha``: the
    ``alpha/2`` quantile of Beta(k, n-k+1) and the ``1-alpha/2`` quantile of Beta(k+1, n-k); fractions."""
    _check_counts(k, n)
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def paired_difference_interval(table: Sequence[int], alpha: float) -> tuple[float, float, float]:
    """Newcombe's (1998, method 10) interval of ``p_before - p_after`` from paired binary outcomes.

    Args:
        table: ``(a, b, c, d)`` counts of pairs: a = correct before and after, b = correct before only (lost),
            c = correct after only (gained), d = wrong in both.
        alpha: two-sided error level.
    Returns:
        ``(estimate, lower, upper)`` in fraction points, ``estimate = (b - c) / n``.
    Raises:
        SaceError: negative counts or no pairs.
    """
    a, b, c, d = (int(x) for x in table)
    n = a + b + c + d
    if min(a, b, c, d) < 0 or n < 1:
        raise SaceError(f"a paired table needs non-negative counts and at least one pair, got {table}")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, alpha)
    l2, u2 = wilson_interval(a + c, n, alpha)
    den = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if den > 0:
        cross = a * d - b * c          # continuity-corrected numerator of phi, as in Newcombe's method 10
        num = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
        phi = num / math.sqrt(den)
    est = p1 - p2
    lo = est - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = est + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return est, max(-1.0, lo), min(1.0, hi)


def _verdict(lo: float, hi: float, line: float) -> str:
    eps = 1e-12
    return PASS if hi <= line + eps else FAIL if lo > line + eps else UNDECIDED


def more_needed(decide, counts: Sequence[int], max_factor: int = 64) -> int | None:
    """About how many more trials would decide a figure if its observed shares held: the smallest
    ``n' = n * f`` (f = 1.25, 1.5, 2, 3, ... up to ``max_factor``) with all counts scaled by f whose verdict
    ``decide(scaled_counts)`` is PASS or FAIL; returns ``n' - n`` or None."""
    n = sum(counts)
    for f in (1.25, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64):
        if f > max_factor:
            break
        scaled = [int(round(x * f)) for x in counts]
        if decide(scaled) != UNDECIDED:
            return sum(scaled) - n
    return None


def rate_figure(name: str, hits: int, n: int, threshold: float, alpha: float) -> Figure:
    """A share that must stay at or below ``threshold`` (ACC_e, held-out): Clopper-Pearson interval at
    level ``1 - alpha`` and its verdict."""
    lo, hi = clopper_pearson_interval(hits, n, alpha)

    def decide(cnt):
        return _verdict(*clopper_pearson_interval(cnt[0], cnt[0] + cnt[1], alpha), threshold)
    v = _verdict(lo, hi, threshold)
    more = more_needed(decide, [hits, n - hits]) if v == UNDECIDED else None
    return Figure(name, hits / n, lo, hi, float(threshold), n, v, "Clopper-Pearson", more,
                  {"hits": int(hits)}, alpha)


def drop_figure(name: str, before: Sequence[bool], after: Sequence[bool], threshold: float,
                alpha: float) -> Figure:
    """The paired drop ``share correct before - share correct after`` (ACC_i drop): Newcombe's interval at
    level ``1 - alpha`` and its verdict. ``before``/``after``: (N,) bool per retain image, same order.
    Raises SaceError when the lengths differ or are 0."""
    bt, at = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    if bt.shape != at.shape or bt.ndim != 1 or bt.size == 0:
        raise SaceError(f"a paired drop needs two equally long non-empty outcome lists, got {bt.shape} and "
                        f"{at.shape}")
    table = [int((bt & at).sum()), int((bt & ~at).sum()), int((~bt & at).sum()), int((~bt & ~at).sum())]
    return _drop_from_table(name, table, threshold, alpha)


def _drop_from_table(name: str, table: Sequence[int], threshold: float, alpha: float) -> Figure:
    est, lo, hi = paired_difference_interval(table, alpha)

    def decide(cnt):
        _, l_, h_ = paired_difference_interval(cnt, alpha)
        return _verdict(l_, h_, threshold)
    v = _verdict(lo, hi, threshold)
    more = more_needed(decide, table) if v == UNDECIDED else None
    n = int(sum(table))
    return Figure(name, est, lo, hi, float(threshold), n, v, "Newcombe paired (method 10)", more,
                  {"table_abcd": [int(x) for x in table], "acc_before": (table[0] + table[1]) / n,
                   "acc_after": (table[0] + table[2]) / n}, alpha)


def erasure_figures(target_hits: Sequence[bool], heldout_hits: Sequence[bool] | None,
                    retain_before: Sequence[bool] | None, retain_after: Sequence[bool] | None,
                    thresholds: Thresholds, alpha: float) -> list[Figure]:
    """ACC_e, held-out and ACC_i drop (the module docstring defines them) with intervals and verdicts.

    Args:
        target_hits: (N_e,) bool: the target image shows the concept. heldout_hits: the same for the held-out
            paraphrases (None or empty: not measured). retain_before/after: (N_i,) bool: the retain image is
            correct without / with the adapter, same prompts and seeds (None: not measured).
        alpha: two-sided level of this look (``Design.alpha_look``).
    Returns:
        the measured figures in this order.
    """
    th = thresholds.validate()
    out = []
    t = np.asarray(target_hits, dtype=bool)
    if t.size:
        out.append(rate_figure("ACC_e", int(t.sum()), int(t.size), th.max_acc_e, alpha))
    if heldout_hits is not None and len(heldout_hits):
        h = np.asarray(heldout_hits, dtype=bool)
        out.append(rate_figure("held-out", int(h.sum()), int(h.size), th.max_heldout, alpha))
    if retain_before is not None and retain_after is not None and len(retain_before):
        out.append(drop_figure("ACC_i drop", retain_before, retain_after, th.max_acc_i_drop, alpha))
    return out


def overall(figures: Sequence[Figure]) -> str:
    """FAIL if any figure fails, PASS if all pass (and there is at least one), else not decided."""
    vs = [f.verdict for f in figures]
    if FAIL in vs:
        return FAIL
    return PASS if vs and all(v == PASS for v in vs) else UNDECIDED


def decide_sequentially(design: Design, figures_at: Callable[[int, float], list[Figure]]) -> tuple[list[Figure], int]:
    """Run a sequential design: ``figures_at(n, alpha_look)`` measures the figures at ``n`` images per set
    (reusing what it measured at earlier looks); looks go on while :func:`overall` says not decided and a
    larger look remains. Returns ``(figures of the last look, its n)``."""
    figs: list[Figure] = []
    for n in design.looks:
        figs = figures_at(n, design.alpha_look)
        if overall(figs) != UNDECIDED:
            return figs, n
    return figs, design.looks[-1]
