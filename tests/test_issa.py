"""ISSA on the embedded model: identical prompts give zero divergence and a flat curve, results are
reproducible for a seed, and the forked single-pass batching equals independent generations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sace.errors import SaceError
from sace.issa import bootstrap_ci, issa, write_issa_outputs


@pytest.fixture(scope="module")
def setup():
    from sace import domains
    from sace.models.registry import load_model

    m = load_model("fashion")
    return m, domains.judge_for(m, "sneaker").score


def test_identical_prompts_give_zero_divergence_and_flat_curve(setup):
    m, score = setup
    r = issa(m, ["a photo of a sneaker"], ["a photo of a sneaker"], [0, 1, 2], score)
    assert np.abs(r.js).max() < 1e-7 and r.flip.max() == 0.0
    # every switch point generates the same image: the curves are flat per seed
    assert np.allclose(r.A, r.A[:, :, :1], atol=1e-5) and np.allclose(r.B, r.A, atol=1e-5)
    assert np.isnan(r.saliency()["S"]).all()   # no concept difference to attribute: S_k undefined, not 0/0


def test_issa_is_reproducible_and_matches_independent_generation(setup, tmp_path):
    from sace.generate import generate

    m, score = setup
    seeds = [5, 6]
    a = issa(m, ["a photo of a sneaker"], ["a photo of a sandal"], seeds, score)
    b = issa(m, ["a photo of a sneaker"], ["a photo of a sandal"], seeds, score)
    assert np.array_equal(a.A, b.A) and np.array_equal(a.B, b.B) and np.array_equal(a.js, b.js)
    assert a.passes == 1                                 # all 2K runs of both seeds in one sampling pass
    k = m.schedule.num_scales
    ref_c = generate(m, ["a photo of a sneaker"] * 2, seeds)
    ref_a = generate(m, ["a photo of a sandal"] * 2, seeds)
    assert torch.allclose(a.images_A[0, :, k], ref_c, atol=1e-4)   # A(K): concept everywhere
    assert torch.allclose(a.images_A[0, :, 0], ref_a, atol=1e-4)   # A(0): anchor everywhere
    # the concept changes the outcome: the classifier sees a sneaker under c*, not under c
    assert a.A[..., k].mean() > 0.5 > a.A[..., 0].mean()
    assert a.js.sum() > 0 and 0 <= a.divergence()["share"][0] <= 1
    paths = write_issa_outputs(a, tmp_path / "issa")
    data = json.loads((tmp_path / "issa" / "issa.json").read_text())
    assert data["summary"]["num_seeds"] == 2 and len(data["commitment_A"]["mean"]) == k + 1
    assert (tmp_path / "issa" / "report.html").stat().st_size > 10_000 and paths["report"]


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
