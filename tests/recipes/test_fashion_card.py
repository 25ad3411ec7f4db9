"""The embedded ``fashion`` model meets its quality targets (reduced, seeded sample; the full numbers are in
``src/sace/assets/fashion/MODEL_CARD.md``, produced by ``benchmarks/fashion_quality.py``)."""

from __future__ import annotations

import pytest
import torch

from sace.recipes.fashion_card import THRESHOLDS, measure_fashion_model


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def test_fashion_model_meets_quality_targets(fashion):
    torch.manual_seed(0)
    m = measure_fashion_model(fashion, n_per_class=10, n_recon=1000, kid=False, speed=False)
    assert m["classifier_test_acc"] >= THRESHOLDS["classifier_test_acc"], m["classifier_test_acc"]
    assert m["vae_recon_acc"] >= THRESHOLDS["vae_recon_acc"], m["vae_recon_acc"]
    assert m["gen_acc_train_captions"] >= THRESHOLDS["gen_acc_train_captions"], m["gen_acc_train_captions_per_class"]
    assert m["gen_acc_heldout"] >= THRESHOLDS["gen_acc_heldout"], m["gen_acc_heldout_per_class"]


def test_fashion_generation_is_deterministic(fashion):
    from sace.generate import generate
    a = generate(fashion, ["a photo of a sneaker", "a dress"], [3, 4])
    b = generate(fashion, ["a dress"], [4])
    assert a.shape == (2, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a[1], b[0], atol=1e-5)   # per-image generators: batch composition does not matter
