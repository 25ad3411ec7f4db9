"""The fashion domain's packaged concept classifier (inference): strict loading, accuracy on both input
forms, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import sace.domains.fashion.classifier as fc
from sace.domains.fashion import classes, data
from sace.errors import CheckpointError, SaceError
from tests.helpers import needs_fashion_data


@pytest.fixture(scope="module")
def clf():
    return fc.load_classifier()


@pytest.fixture(scope="module")
def subset():
    x, y = data.load_split("test")
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:1000]
    return x[idx], y[idx]


def test_packaged_asset_loads_strictly(clf):
    assert isinstance(clf, fc.FashionClassifier) and not clf.training
    assert fc.DEFAULT_CLASSIFIER_PATH.is_file()
    assert fc.DEFAULT_CLASSIFIER_PATH.stat().st_size < 2_000_000
    state = load_file(str(fc.DEFAULT_CLASSIFIER_PATH))
    assert set(state) == set(clf.state_dict())
    report = json.loads((fc.DEFAULT_CLASSIFIER_PATH.parent / "classifier.json").read_text())
    assert report["test_accuracy_raw28"] >= 0.90 and report["test_accuracy_padded32"] >= 0.90
    assert report["classes"] == list(classes.CLASS_NAMES) and report["seed"] == 0


@needs_fashion_data
def test_accuracy_on_seeded_test_subset_both_forms(clf, subset):
    x, y = subset
    assert torch.equal(torch.bincount(y, minlength=10) > 70, torch.ones(10, dtype=torch.bool))
    raw = data.unit_images(x)                             # (1000, 3, 28, 28) in [0, 1]
    padded = data.model_to_unit(data.to_model_images(x))   # (1000, 3, 32, 32) in [0, 1], 2 px black border
    p_raw, p_pad = clf.predict(raw), clf.predict(padded)
    acc_raw = float((p_raw == y).float().mean())
    acc_pad = float((p_pad == y).float().mean())
    assert acc_raw >= 0.90, acc_raw
    assert acc_pad >= 0.90, acc_pad
    assert float((p_raw == p_pad).float().mean()) >= 0.90
    # one gray channel gives the same answer as three replicated ones
    assert torch.equal(clf.predict(raw[:, :1]), p_raw)


def test_output_shapes_dtypes_ranges(clf):
    g = torch.Generator().manual_seed(1)
    for size in (28, 32, 64, 20):
        x = torch.rand(5, 3, size, size, generator=g)
        logits = clf(x)
        assert logits.shape == (5, 10) and logits.dtype == torch.float32
        p = clf.predict_proba(x, batch_size=2)
        assert p.shape == (5, 10) and torch.allclose(p.sum(-1), torch.ones(5), atol=1e-5)
        assert bool((p >= 0).all()) and not p.requires_grad
        pred = clf.predict(x)
        assert pred.shape == (5,) and pred.dtype == torch.int64 and torch.equal(pred, p.argmax(-1))
        f = clf.features(x)
        assert f.shape == (5, clf.feature_dim) == (5, 128) and bool((f >= 0).all())
    # forward keeps gradients (usable as a guidance signal)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    clf(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_bad_inputs(clf):
    with pytest.raises(SaceError, match="float images"):
        clf.predict(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(SaceError, match=r"\(B, 3, H, W\)"):
        clf.predict(torch.zeros(3, 28, 28))
    with pytest.raises(SaceError, match=r"\(B, 3, H, W\)"):
        clf.predict(torch.zeros(1, 2, 28, 28))


def test_missing_file_says_how_to_build(tmp_path):
    with pytest.raises(SaceError) as e:
        fc.load_classifier(tmp_path / "nope.safetensors")
    assert not isinstance(e.value, CheckpointError)
    assert "train_classifier" in str(e.value) and "nope.safetensors" in str(e.value)


def test_corrupt_file_is_checkpoint_error(tmp_path):
    p = tmp_path / "classifier.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        fc.load_classifier(tmp_path)  # a directory resolves to classifier.safetensors


def test_mismatched_keys_and_shapes_are_checkpoint_errors(tmp_path):
    state = {k: v.clone() for k, v in fc.FashionClassifier().state_dict().items()}
    renamed = dict(state)
    renamed["head.weights"] = renamed.pop("head.weight")
    save_file(renamed, str(tmp_path / "keys.safetensors"))
    with pytest.raises(CheckpointError) as e:
        fc.load_classifier(tmp_path / "keys.safetensors")
    assert "'head.weight'" in str(e.value) and "'head.weights'" in str(e.value)

    wrong = dict(state)
    wrong["head.weight"] = torch.zeros(11, 128)
    save_file(wrong, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match=r"head.weight: file \(11, 128\) vs model \(10, 128\)"):
        fc.load_classifier(tmp_path / "shape.safetensors")

    save_file(state, str(tmp_path / "ok.safetensors"), metadata={"config": "{not json"})
    with pytest.raises(CheckpointError, match="config"):
        fc.load_classifier(tmp_path / "ok.safetensors")
