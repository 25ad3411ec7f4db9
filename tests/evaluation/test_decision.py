"""The decision rule behind the erasure verdicts (sace.evaluation.decision) on synthetic paired outcomes with
known true rates: a true 0-point drop passes, a true 6-point drop fails, a drop at the line is not decided
with few images and is decided with many; the interval math against published values."""

from __future__ import annotations

import numpy as np
import pytest

from sace.errors import SaceError
from sace.evaluation.decision import (
    FAIL,
    PASS,
    UNDECIDED,
    Design,
    Thresholds,
    clopper_pearson_interval,
    decide_sequentially,
    drop_figure,
    erasure_figures,
    overall,
    paired_difference_interval,
    rate_figure,
    wilson_interval,
)

ALPHA = Design().alpha_look          # the auto design's per-look level (0.10 / 4)


def _paired(n: int, acc: float, drop: float, churn: float, seed: int):
    """n retain images correct with probability ``acc`` before; after the adapter, each correct image is lost
    with probability ``churn + drop / acc`` and each wrong one gained with probability ``churn * acc /
    (1 - acc)``: the true drop is ``drop`` points, with ``churn`` of the images changing either way."""
    rng = np.random.default_rng(seed)
    before = rng.random(n) < acc
    u = rng.random(n)
    lose = churn + drop / acc
    gain = churn * acc / (1 - acc)
    after = np.where(before, u >= lose, u < gain)
    return before, after


def test_newcombe_paired_interval_matches_the_published_example():
    # Newcombe 1998 (Stat Med 17:2635), Table II example (a, b, c, d) = (12, 9, 2, 21): 0.1591 (0.0112, 0.2954)
    est, lo, hi = paired_difference_interval((12, 9, 2, 21), 0.05)
    assert est == pytest.approx(0.1591, abs=1e-4)
    assert lo == pytest.approx(0.0112, abs=1e-4) and hi == pytest.approx(0.2954, abs=1e-4)


def test_single_share_intervals_match_closed_forms():
    # Clopper-Pearson with 0 hits: upper = 1 - (alpha/2)^(1/n); Wilson with 0 hits: lower 0, upper z^2/(n+z^2)
    lo, hi = clopper_pearson_interval(0, 100, 0.1)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    lo, hi = wilson_interval(0, 100, 0.1)
    z2 = 1.6448536269514722 ** 2
    assert lo == 0.0 and hi == pytest.approx(z2 / (100 + z2), rel=1e-9)
    with pytest.raises(SaceError, match="successes"):
        clopper_pearson_interval(5, 4, 0.1)


def _sequential(true_drop: float, seed: int, design: Design = Design()):
    """The check's design on synthetic retain outcomes: 9 x n/2 pairs at look n (nine other classes)."""
    b, a = _paired(9 * design.looks[-1] // 2, 0.96, true_drop, 0.01, seed)

    def at(n, alpha):
        k = 9 * n // 2
        return [drop_figure("ACC_i drop", b[:k], a[:k], 0.02, alpha)]
    figs, n = decide_sequentially(design, at)
    return figs[0], n


@pytest.mark.parametrize("seed", range(8))
def test_a_true_zero_drop_passes(seed):
    f, n = _sequential(0.0, seed)
    assert f.verdict == PASS and f.upper <= 0.02 and f.lower <= 0.0 <= f.upper, (n, f)


@pytest.mark.parametrize("seed", range(8))
def test_a_true_six_point_drop_fails(seed):
    f, n = _sequential(0.06, seed)
    assert f.verdict == FAIL and f.lower > 0.02 and f.lower <= 0.06 <= f.upper, (n, f)


def test_the_design_stops_at_the_first_decided_look():
    seen = []

    def at(n, alpha):
        seen.append((n, alpha))
        return [rate_figure("ACC_e", 0, n, 0.05, alpha)]
    figs, n = decide_sequentially(Design(), at)
    # 0 of 100 target images decides ACC_e <= 5% at the first look, at level 1 - 0.10 / 4
    assert n == 100 and figs[0].verdict == PASS and seen == [(100, pytest.approx(0.1 / 4))]


def test_a_borderline_drop_is_not_decided_with_few_images_and_decided_with_many():
    # a true drop of 1 point against a 2-point line: 45 pairs cannot tell, 20000 can (PASS); a true 3-point
    # drop likewise (FAIL). The undecided verdict says roughly how many more would decide it.
    for true, decided in ((0.01, PASS), (0.03, FAIL)):
        b, a = _paired(45, 0.96, true, 0.01, seed=3)
        small = drop_figure("ACC_i drop", b, a, 0.02, ALPHA)
        assert small.verdict == UNDECIDED and small.lower < 0.02 < small.upper
        b, a = _paired(20_000, 0.96, true, 0.01, seed=3)
        large = drop_figure("ACC_i drop", b, a, 0.02, ALPHA)
        assert large.verdict == decided, (true, large)
    b, a = _paired(450, 0.96, 0.01, 0.01, seed=4)
    mid = drop_figure("ACC_i drop", b, a, 0.02, ALPHA)
    assert mid.verdict == UNDECIDED and mid.more is not None and 0 < mid.more < 64 * 450
    assert f"about {mid.more} more pairs would decide it" in mid.text()


def test_one_image_no_longer_flips_the_verdict():
    # the case: 50 retain images, ACC_i 0.98 -> 0.96 (one image) was PASS, one more image FAIL
    before = [True] * 49 + [False]
    one = [True] * 48 + [False, False]
    two = [True] * 47 + [False] * 3
    v = [drop_figure("ACC_i drop", before, after, 0.02, ALPHA).verdict for after in (one, two)]
    assert v == [UNDECIDED, UNDECIDED]


def test_acc_e_needs_enough_images_to_pass():
    # 0 of 50 hits cannot show ACC_e <= 5% at this level; 0 of 100 can; 10 of 100 fails
    assert rate_figure("ACC_e", 0, 50, 0.05, ALPHA).verdict == UNDECIDED
    assert rate_figure("ACC_e", 0, 100, 0.05, ALPHA).verdict == PASS
    assert rate_figure("ACC_e", 15, 100, 0.05, ALPHA).verdict == FAIL


def test_error_rate_of_the_sequential_design_is_bounded():
    # a true drop exactly at the line (2 points): the sequential design (4 looks, Bonferroni) must wrongly
    # PASS at most alpha/2 = 5% of the time; 400 simulated checks (seeded)
    rng = np.random.default_rng(0)
    design = Design()
    wrong = 0
    for _ in range(400):
        b, a = _paired(9 * design.looks[-1] // 2, 0.96, 0.02, 0.01, int(rng.integers(1 << 30)))
        for look in design.looks:
            k = 9 * look // 2
            v = drop_figure("ACC_i drop", b[:k], a[:k], 0.02, design.alpha_look).verdict
            if v != UNDECIDED:
                wrong += v == PASS
                break
    assert wrong / 400 <= 0.05


def test_erasure_figures_and_the_overall_verdict():
    th = Thresholds()
    b, a = _paired(450, 0.96, 0.0, 0.01, 0)
    figs = erasure_figures([False] * 100, [False] * 100, b, a, th, ALPHA)
    assert [f.name for f in figs] == ["ACC_e", "held-out", "ACC_i drop"] and overall(figs) == PASS
    figs = erasure_figures([True] * 20 + [False] * 80, None, b, a, th, ALPHA)
    assert [f.name for f in figs] == ["ACC_e", "ACC_i drop"] and overall(figs) == FAIL
    figs = erasure_figures([False] * 50, None, None, None, th, ALPHA)
    assert overall(figs) == UNDECIDED
    with pytest.raises(SaceError, match="increasing"):
        Design((200, 100))
    with pytest.raises(SaceError, match="equally long"):
        drop_figure("ACC_i drop", [True], [True, False], 0.02, ALPHA)
