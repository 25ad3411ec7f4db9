"""Erasure metrics (accuracy, NudeNet summary, locality, bootstrap, JS): values checked against hand
computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sace.errors import SaceError
from sace.evaluation.metrics import (
    accuracy_erasure,
    bootstrap_ci,
    erasure_rate,
    js_divergence_bits,
    locality,
    nudenet_summary,
)

# --- classification metrics ----------------------------------------------------------------------------


def test_accuracy_erasure_hand_example():
    # classes 0 (erased), 1, 2; 4 prompts for class 0, 2 for class 1, 4 for class 2
    target = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 3, 3, 1, 1, 0, 2, 2, 2, 1]
    out = accuracy_erasure(torch.tensor(pred), torch.tensor(target), erased={0})
    assert out["acc_e"] == pytest.approx(1 / 4)
    assert out["acc_e_macro"] == pytest.approx(1 / 4)
    assert out["per_class"] == pytest.approx({0: 0.25, 1: 0.5, 2: 0.75})
    assert out["acc_i"] == pytest.approx((0.5 + 0.75) / 2)  # macro over classes 1, 2
    assert out["acc_i_micro"] == pytest.approx(4 / 6)  # 1 + 3 correct of 6 prompts
    assert out["n_e"] == 4 and out["n_i"] == 6
    both = accuracy_erasure(pred, target, erased=[0, 1])
    assert both["acc_e"] == pytest.approx(2 / 6) and both["acc_e_macro"] == pytest.approx(0.375)
    assert both["acc_i"] == pytest.approx(0.75)
    assert math.isnan(accuracy_erasure(pred, target, erased=[])["acc_e"])
    with pytest.raises(SaceError, match="same length"):
        accuracy_erasure([0, 1], [0], erased={0})
    with pytest.raises(SaceError, match="integer"):
        accuracy_erasure(torch.tensor([0.0]), torch.tensor([0]), erased={0})


def test_erasure_rate():
    assert erasure_rate(0.942, 0.044) == pytest.approx(0.898 / 0.942)
    assert erasure_rate(0.5, 0.5) == 0.0 and erasure_rate(0.2, 0.4) == pytest.approx(-1.0)
    assert math.isnan(erasure_rate(0.0, 0.1))
    t = erasure_rate(torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.0]))
    assert t[0].item() == pytest.approx(0.75) and math.isnan(t[1].item())


# --- NudeNet summary -----------------------------------------------------------------------------------


def test_nudenet_summary_counts_and_asr():
    dets = [
        [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9}, {"class": "FEMALE_BREAST_EXPOSED", "score": 0.61},
         {"class": "FACE_FEMALE", "score": 0.99}],
        [{"class": "FEET_EXPOSED", "score": 0.8}, {"class": "MALE_GENITALIA_EXPOSED", "score": 0.59}],
        [{"class": "BUTTOCKS_COVERED", "score": 0.95}],
        [],
    ]
    s = nudenet_summary(dets, threshold=0.6)
    assert s["counts"]["FEMALE_BREAST_EXPOSED"] == 2 and s["image_counts"]["FEMALE_BREAST_EXPOSED"] == 1
    assert s["counts"]["FEET_EXPOSED"] == 1 and s["counts"]["MALE_GENITALIA_EXPOSED"] == 0
    assert len(s["counts"]) == 9
    assert s["sensitive"] == 2 and s["common"] == 1 and s["total"] == 3
    assert s["n_images"] == 4 and s["n_flagged"] == 2 and s["asr"] == pytest.approx(0.5)
    assert nudenet_summary(dets, threshold=0.6, classes="sensitive")["asr"] == pytest.approx(0.25)
    low = nudenet_summary(dets, threshold=0.5)
    assert low["sensitive"] == 3 and low["n_flagged"] == 2
    assert math.isnan(nudenet_summary([], 0.6)["asr"])
    with pytest.raises(SaceError, match="'class' or numeric 'score'"):
        nudenet_summary([[{"label": "x"}]])


# --- locality, bootstrap, JS ---------------------------------------------------------------------------


def test_locality():
    a = torch.zeros(3, 3, 4, 4)
    b = a.clone()
    b[1] += 0.5  # uniform change
    b[2, 0, 0, 0] = 1.0  # one pixel of one channel: mean |diff| = 1/48
    out = locality(a, b)
    assert out["mad"].tolist() == pytest.approx([0.0, 0.5, 1 / 48])
    assert out["changed"].tolist() == [False, True, True]
    assert out["frac_changed"] == pytest.approx(2 / 3)
    assert out["mean_mad"] == pytest.approx((0.5 + 1 / 48) / 3)
    assert locality(a, b, tol=0.1)["frac_changed"] == pytest.approx(1 / 3)
    u8 = locality((a * 255).to(torch.uint8), (b * 255).round().to(torch.uint8))
    assert u8["mad"][1].item() == pytest.approx(128 / 255)
    with pytest.raises(SaceError, match="differ"):
        locality(a, b[:2])


def test_bootstrap_ci():
    mean, lo, hi = bootstrap_ci([2.0] * 10)
    assert (mean, lo, hi) == (2.0, 2.0, 2.0)
    rng = np.random.default_rng(0)
    v = rng.normal(1.0, 1.0, 400)
    mean, lo, hi = bootstrap_ci(v, n=2000, seed=0)
    se = v.std(ddof=1) / math.sqrt(len(v))
    assert mean == pytest.approx(v.mean())
    assert lo < mean < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)  # normal-theory width
    assert bootstrap_ci(v, n=300, seed=1) == bootstrap_ci(torch.tensor(v), n=300, seed=1)
    with pytest.raises(SaceError, match="at least one value"):
        bootstrap_ci([])
    with pytest.raises(SaceError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_js_divergence_bits():
    from scipy.spatial.distance import jensenshannon

    p = torch.tensor([0.0, 0.0, 1.0, 0.3, 0.5, 0.9, 0.25], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0, 1.0, 0.3, 0.1, 0.2, 0.75], dtype=torch.float64)
    js = js_divergence_bits(p, q)
    assert js.dtype == torch.float64 and js.shape == (7,)
    ref = [jensenshannon([a, 1 - a], [b, 1 - b]) ** 2 for a, b in zip(p.tolist(), q.tolist(), strict=True)]
    assert js.tolist() == pytest.approx(ref, abs=1e-12)
    assert js[1].item() == pytest.approx(math.log(2)) and js[0].item() == 0.0 and js[3].item() == 0.0
    assert torch.equal(js_divergence_bits(q, p), js)
    assert js_divergence_bits(torch.rand(2, 3), 0.5).shape == (2, 3)  # broadcasting, float32
    with pytest.raises(SaceError, match="probabilities"):
        js_divergence_bits(1.2, 0.5)
