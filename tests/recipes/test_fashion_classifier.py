"""Recipe: training the fashion domain's concept classifier (deterministic, resumable)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import sace.recipes.fashion_classifier as recipe
from sace.domains.fashion.classifier import FashionClassifier, load_classifier
from sace.errors import SaceError
from tests.helpers import needs_fashion_data


@needs_fashion_data
def test_tiny_training_is_deterministic_and_resumable(tmp_path, monkeypatch):
    real = recipe.load_split
    monkeypatch.setattr(recipe, "load_split", lambda split, root=None: tuple(t[:256] for t in real(split, root)))
    kw = dict(epochs=2, batch_size=64, progress=False, num_threads=1)
    full = recipe.train_classifier(tmp_path / "a", **kw)
    part = recipe.train_classifier(tmp_path / "b", stop_after=1, **kw)
    assert part["finished"] is False and (tmp_path / "b" / "classifier.ckpt").is_file()
    with pytest.raises(SaceError, match="resume=False"):
        recipe.train_classifier(tmp_path / "b", **{**kw, "seed": 1})
    resumed = recipe.train_classifier(tmp_path / "b", **kw)
    assert not (tmp_path / "b" / "classifier.ckpt").exists()
    a = load_file(str(tmp_path / "a" / "classifier.safetensors"))
    b = load_file(str(tmp_path / "b" / "classifier.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["history"] == resumed["history"] and len(full["history"]) == 2
    assert full["test_accuracy_raw28"] == resumed["test_accuracy_raw28"]
    report = json.loads((tmp_path / "a" / "classifier.json").read_text())
    assert report["finished"] and report["seed"] == 0 and report["train_images"] == 256
    assert len(report["data_source"]["files"]) == 4
    assert load_classifier(tmp_path / "a").config == FashionClassifier().config
