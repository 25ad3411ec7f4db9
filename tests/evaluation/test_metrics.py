"""Erasure metrics (accuracy, NudeNet summary, locality, bootstrap, JS): values checked against hand
computations."""

from __future__ import annotations

import math

import pytest
import torch

from sace.errors import SaceError
from sace.evaluation.metrics import (
    accuracy_erasure,
    erasure_rate,
    js_divergence_bits,
    locality,
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
