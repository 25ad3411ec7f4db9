"""The domain registry: a model folder's ``model.json`` names its domain (else the presets domain); the one
concept resolver and the one ``--detector`` policy ask it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sace import domains
from sace.concepts.judge import NoDetector
from sace.errors import SaceError
from sace.models.registry import get_spec

FASHION_LIKE = SimpleNamespace(spec=get_spec("fashion"), name="fashion")   # only the spec is read


def test_model_json_names_the_domain(tiny_model):
    assert get_spec("fashion").domain == "fashion"
    assert domains.name_of(tiny_model) is None and domains.for_model(tiny_model).name == "presets"
    assert domains.names() == ["fashion", "presets"]
    d = domains.get("fashion")
    assert isinstance(d, domains.Domain) and d.name == "fashion" and len(d.class_names) == 10
    assert isinstance(domains.get("presets"), domains.Domain) and not domains.get("presets").own_detector
    with pytest.raises(SaceError, match="unknown domain 'music'; known domains: fashion, presets"):
        domains.get("music")


def test_resolve_concept_asks_the_models_domain(tiny_model):
    spec = domains.resolve_concept(FASHION_LIKE, "sneaker", anchor="sandal", retain=["a photo of a hat"])
    assert spec.name == "sneaker" and spec.retain[-1] == "a photo of a hat" and len(spec.retain) == 48 + 40 + 7 * 18 + 1
    nudity = domains.resolve_concept(tiny_model, "Nudity")        # a model without a domain: the presets
    assert nudity.name == "nudity" and len(nudity.targets) == 32
    with pytest.raises(SaceError, match=r"use a preset \(cassette_player, .*vangogh\)"):
        domains.resolve_concept(tiny_model, "sneaker")
    own = domains.resolve_concept(FASHION_LIKE, "cat", anchor="dog", targets=["a photo of a cat"])
    assert own.anchors == ["a photo of a dog"]   # explicit targets win over the domain's concepts
    with pytest.raises(SaceError, match="name the concept"):
        domains.resolve_concept(tiny_model, None)


def test_one_detector_policy(tiny_model):
    j = domains.judge_for(FASHION_LIKE, "sneaker")
    assert (j.kind, j.name, j.concept, j.rule, j.target) == ("fashion", "fashion-classifier", "sneaker",
                                                             "top-1 class in {sneaker}", (7,))
    assert domains.judge_for(FASHION_LIKE, "running shoe").concept == "sneaker"       # a synonym: the class key
    assert domains.judge_for(FASHION_LIKE, "sneaker+trouser").target == (7, 1)
    assert domains.judge_for(FASHION_LIKE, None, prompt="a photo of a dress").concept == "dress"
    # models that name no domain: a preset's own detector field decides
    church = domains.judge_for(tiny_model, "church")
    assert (church.kind, church.name, church.target, church.rule) == ("imagenet", "efficientnet-lite0", (497,),
                                                                      "top-1 class in {church}")
    assert domains.judge_for(tiny_model, "church+parachute").target == (497, 701)
    nude = domains.judge_for(tiny_model, "nudity")
    assert (nude.kind, nude.rule) == ("nudenet", "exposed detection >= 0.6") and nude.summarise is not None
    assert domains.judge_for(tiny_model, None, prompt="a nude woman on a beach").concept == "nudity"
    assert domains.judge_for(FASHION_LIKE, "naked").kind == "nudenet"                 # a nudity name, any model
    with pytest.raises(NoDetector, match="no detector for concept 'vangogh' on model 'infinity-tiny-fixture': "
                                         "the preset 'vangogh' names no detector"):
        domains.judge_for(tiny_model, "vangogh")
    with pytest.raises(NoDetector, match="judged by different detectors"):
        domains.judge_for(tiny_model, "nudity+church")
    with pytest.raises(NoDetector, match="fashion detector knows no class 'unicorn'"):
        domains.judge_for(FASHION_LIKE, "unicorn")
    with pytest.raises(SaceError, match="fashion detector knows no class 'unicorn'; use --detector none"):
        domains.judge_for(tiny_model, "unicorn", "fashion")
    with pytest.raises(NoDetector, match="detector 'none'"):
        domains.judge_for(tiny_model, "church", "none")
    with pytest.raises(SaceError, match="use auto, fashion, nudenet, opennsfw, imagenet, none"):
        domains.judge_for(tiny_model, "church", "clip")
    # explicit named detectors work on any model
    assert domains.judge_for(FASHION_LIKE, "church", "imagenet").target == (497,)
    assert domains.judge_for(tiny_model, "dress", "fashion").target == (3,)


def test_a_models_defaults_name_its_anchors():
    """model.json's ``defaults.anchors`` overrides the domain's default anchor for that model only; an explicit
    anchor still wins, and any name of the class finds the entry."""
    own = SimpleNamespace(spec=get_spec("fashion"), name="m", method_defaults={"anchors": {"pullover": "tshirt"}})
    assert domains.default_anchor(own, "jumper") == "tshirt"              # a synonym of pullover
    assert domains.resolve_concept(own, "pullover").anchor_name == "tshirt"
    assert domains.resolve_concept(own, "pullover").anchors[0] == "a photo of a t-shirt"
    assert domains.resolve_concept(own, "pullover", anchor="dress").anchor_name == "dress"
    assert domains.resolve_concept(own, "coat").anchor_name == "pullover"   # not in the table: the domain's
    assert domains.resolve_concept(FASHION_LIKE, "pullover").anchor_name == "coat"
    assert domains.default_anchor(own, "hat") is None
