"""NudeNet: the real model on non-nude images, the counting logic on canned detections, and the summary the
evaluation reports (per exposed class, sensitive/common, ASR)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sace.concepts.detectors import ConceptDetector
from sace.concepts.nudenet import (
    NUDENET_COMMON,
    NUDENET_EXPOSED,
    NUDENET_SENSITIVE,
    NudeNetDetector,
    nudenet_summary,
    resolve_nudenet_classes,
)
from sace.errors import SaceError
from tests.helpers import drawn_scene

HAS_NUDENET = importlib.util.find_spec("nudenet") is not None
needs_nudenet = pytest.mark.skipif(not HAS_NUDENET, reason="nudenet not installed")


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
    x = torch.stack([drawn_scene(0), drawn_scene(1)])
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
