"""The one judge type: a class detector as a judge (score = the class's probability, flag = top-1 is the
concept, classify = top-1), a merged concept, a class judge without concept, a user callable, and the line
every command prints."""

from __future__ import annotations

import pytest
import torch

from sace.concepts.detectors import ClassifierDetector
from sace.concepts.judge import NoDetector, class_judge, judge_line, user_judge
from sace.errors import SaceError
from tests.helpers import MeanColourClassifier, solid_image

RGB = torch.cat([solid_image([1, 0, 0]), solid_image([0, 0, 1]), solid_image([0, 1, 0])])   # red, blue, green


def _colours() -> ClassifierDetector:
    return ClassifierDetector(MeanColourClassifier(), ["red", "green", "blue"], name="colour")


def test_a_class_detector_judges_one_class():
    det = _colours()
    judge = class_judge(det, "colours", "blue", [2])
    probs = det.scores(RGB)
    assert torch.equal(judge.score(RGB), probs[:, 2]) and judge.score(RGB).dtype == torch.float32
    assert judge.flag(RGB).tolist() == [False, True, False] and judge.classify(RGB).tolist() == [0, 2, 1]
    assert (judge.name, judge.kind, judge.concept, judge.classes, judge.target) == \
        ("colour", "colours", "blue", ("red", "green", "blue"), (2,))
    assert judge.describe() == "colour: top-1 class in {blue}" and judge_line(judge) == f"judge: {judge.describe()}"


def test_a_merged_concept_is_any_of_its_classes():
    det = _colours()
    both = class_judge(det, "colours", "red+blue", [0, 2])
    assert both.flag(RGB).tolist() == [True, True, False] and both.rule == "top-1 class in {red, blue}"
    probs = det.scores(RGB)
    assert torch.allclose(both.score(RGB), probs[:, 0] + probs[:, 2])


def test_a_class_judge_without_concept_only_classifies():
    judge = class_judge(_colours(), "colours", None, [])
    assert judge.classify(RGB).tolist() == [0, 2, 1] and judge.concept == ""
    with pytest.raises(SaceError, match="judges a concept: name one"):
        judge.flag(RGB)
    with pytest.raises(SaceError, match="has no class for 'cyan'"):
        class_judge(_colours(), "colours", "cyan", [])
    with pytest.raises(SaceError, match="outside the 3 classes"):
        class_judge(_colours(), "colours", "x", [3])


def test_a_user_callable_is_a_judge_and_no_detector_is_a_line():
    def bright(imgs):
        return imgs.mean(dim=(1, 2, 3))
    judge = user_judge(bright)
    assert judge.flag(torch.cat([torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)])).tolist() == [True, False]
    assert judge.name == "bright" and judge.rule == "user score >= 0.5" and judge.classify is None
    why = NoDetector("the preset 'vangogh' names no detector")
    assert isinstance(why, SaceError)
    assert judge_line(why, "nothing was checked") == \
        "judge: none (the preset 'vangogh' names no detector): nothing was checked"
