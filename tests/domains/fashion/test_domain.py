"""The fashion domain as the core sees it (``sace.domains.get("fashion")``): concepts, evaluation sets,
neighbours, real images and the judge, with their values."""

from __future__ import annotations

import pytest
import torch

from sace import domains
from sace.domains.fashion import data as fdata
from sace.errors import SaceError
from tests.helpers import needs_fashion_data

fashion = domains.get("fashion")


def test_sneaker_concept_sets():
    s = fashion.concept("sneaker")            # default anchor: the nearest class
    assert (s.name, s.anchor_name) == ("sneaker", "sandal")
    assert len(s.targets) == len(s.anchors) == 48 and len(s.heldout) == 10
    assert s.targets[:2] == ["a photo of a sneaker", "a picture of a sneaker"]
    assert s.anchors[:2] == ["a photo of a sandal", "a picture of a sandal"]
    # retain: the other neighbour (ankle boot) with all its 48 training captions, the anchor's 40 synonym
    # captions (its canonical ones are the anchors), and for the 7 classes that are neither target, anchor nor
    # neighbour 8 canonical captions plus each of their 5 synonyms in 2 templates
    assert len(s.retain) == 48 + 40 + 7 * (8 + 5 * 2) and s.retain[-40] == "a photo of a boot"
    assert "a photo of a flip-flop" in s.retain and "a photo of a sandal" not in s.retain
    assert "a photo of a handbag" in s.retain and "a catalog photo of a handbag" not in s.retain
    # entangled: the caption frames without the noun phrase, well-formed (issue 11): one per template but "{}"
    assert s.entangled[:3] == ["a photo", "a picture", "an image"] and len(s.entangled) == 7
    assert fashion.concept("running shoe", "ankle boot").anchors[0] == "a photo of an ankle boot"


def test_neighbours_get_their_synonyms_in_retain():
    from sace.domains.fashion import classes as fc
    from sace.domains.fashion.concepts import fashion_concept, neighbour_classes
    assert neighbour_classes("coat") == [0, 2, 6] and neighbour_classes("sandal") == [7, 9]
    assert neighbour_classes("bag") == [] and neighbour_classes("trouser") == []
    coat = fashion.concept("coat", "dress")
    per_class = {c: sum(fc.mentions_concept(p, c) for p in coat.retain) for c in range(fc.NUM_CLASSES)}
    assert per_class == {0: 48, 1: 18, 2: 48, 3: 40, 4: 0, 5: 18, 6: 48, 7: 18, 8: 18, 9: 18}
    assert set(fc.training_captions("shirt")) <= set(coat.retain)
    assert set(fc.training_captions("dress")) - set(coat.retain) == set(coat.anchors)   # the anchor: synonyms
    # a class without neighbours: canonical + synonym captions of the others, the anchor's synonyms;
    # neighbour_retain=8 turns the neighbour rule off, synonym_retain=0 the synonym rule
    assert len(fashion.concept("bag").retain) == 8 * 18 + 40
    assert len(fashion_concept("coat", "dress", neighbour_retain=8).retain) == 8 * 18 + 40
    assert len(fashion_concept("coat", "dress", neighbour_retain=8, synonym_retain=0).retain) == 8 * 8 + 40
    # anchor_synonyms=False: the anchor class gets what any other class gets (8 canonical + 5 x 2 synonyms)
    assert len(fashion_concept("coat", "dress", neighbour_retain=8, anchor_synonyms=False).retain) == 9 * 18
    with pytest.raises(SaceError, match="retain counts must be >= 0"):
        fashion_concept("coat", "dress", synonym_retain=-1)


def test_unknown_concept_and_same_anchor():
    with pytest.raises(SaceError, match="known: tshirt, trouser"):
        fashion.concept("violin")
    with pytest.raises(SaceError, match="anchor must differ"):
        fashion.concept("sneaker", "trainers")


def test_neighbours_put_the_anchor_first():
    assert fashion.neighbours(fashion.concept("sneaker")) == ([7], [5, 9])
    assert fashion.neighbours(fashion.concept("tshirt")) == ([0], [2, 5, 7, 9])   # anchor: pullover


def test_eval_items_cycle_captions_and_seed_heldout_apart():
    items = fashion.eval_items(fashion.concept("bag"), n_per_class=3, n_heldout=2, seed0=5)
    assert len(items) == 10 * 3 + 2
    assert (items[0].prompt, items[0].seed, items[0].label, items[0].group) == ("a photo of a t-shirt", 5, 0, "other")
    assert [i.group for i in items if i.label == 8][:3] == ["target"] * 3
    assert [(i.prompt, i.seed) for i in items[-2:]] == [("a leather handbag with a short handle", 10_005),
                                                         ("a canvas tote for shopping", 10_006)]


@needs_fashion_data
def test_real_images_are_seeded_per_class():
    x, y = fashion.real_images(2, seed=0)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    assert float(x.mean()) == pytest.approx(0.242372, abs=1e-6)
    assert torch.equal(fashion.real_images(2, seed=0)[0], x) and not torch.equal(fashion.real_images(2, seed=1)[0], x)


@needs_fashion_data
def test_judge_scores_the_class_probability():
    imgs, labels = fdata.load_split("test")
    sneaker = fdata.model_to_unit(fdata.to_model_images(imgs[9:10]))   # test image 9 is a sneaker
    assert int(labels[9]) == 7
    assert fashion.named_concept("a photo of a sneaker") == "sneaker"   # the class the prompt names
    judge = fashion.judge("sneaker")
    assert float(judge.score(sneaker)[0]) == pytest.approx(0.9999, abs=1e-4) and judge.flag(sneaker).tolist() == [True]
    sandal = fashion.judge("sandal")
    assert float(sandal.score(sneaker)[0]) < 1e-3 and sandal.flag(sneaker).tolist() == [False]
    assert judge.classify(sneaker).tolist() == [7] and judge.label_of("a pair of sandals") == 5
    with pytest.raises(SaceError, match="cannot tell which class"):
        fashion.named_concept("a sneaker next to a sandal")
    det = fashion.detector()
    assert det.concepts == list(fashion.class_names) and det.scores(sneaker).argmax(-1).tolist() == [7]
