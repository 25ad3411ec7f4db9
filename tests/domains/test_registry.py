"""The domain registry: a model folder's ``model.json`` names its domain; unknown names fail with the list;
``resolve_concept`` asks the registry; ``--detector auto`` follows the domain."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sace import domains
from sace.erasure.concepts import resolve_concept
from sace.errors import SaceError
from sace.evaluation.selection import build_detector, detector_kind, issa_scorer
from sace.models.registry import get_spec


def test_model_json_names_the_domain(tiny_model):
    assert get_spec("fashion").domain == "fashion"
    assert domains.name_of(tiny_model) is None and domains.for_model(tiny_model) is None
    assert domains.names() == ["fashion"]
    d = domains.get("fashion")
    assert isinstance(d, domains.Domain) and d.name == "fashion" and len(d.class_names) == 10
    with pytest.raises(SaceError, match="unknown domain 'music'; known domains: fashion"):
        domains.get("music")


def test_resolve_concept_asks_the_domain():
    spec = resolve_concept("sneaker", anchor="sandal", retain=["a photo of a hat"], domain="fashion")
    assert spec.name == "sneaker" and spec.retain[-1] == "a photo of a hat" and len(spec.retain) == 65
    with pytest.raises(SaceError, match="names no domain"):
        resolve_concept("sneaker")
    own = resolve_concept("cat", anchor="dog", targets=["a photo of a cat"], domain="fashion")
    assert own.anchors == ["a photo of a dog"]   # explicit targets win over the domain's concepts


def test_detector_selection_follows_the_domain(tiny_model):
    fashion_like = SimpleNamespace(spec=get_spec("fashion"))   # only the spec is read
    assert detector_kind("auto", fashion_like) == "fashion"
    assert detector_kind("auto", tiny_model) == "nudenet" and detector_kind("opennsfw", tiny_model) == "opennsfw"
    assert build_detector("none") is None
    assert build_detector("fashion").name == "fashion-classifier"
    with pytest.raises(SaceError, match="use auto, fashion, nudenet, opennsfw, none"):
        build_detector("clip")
    with pytest.raises(SaceError, match="for ISSA"):
        issa_scorer("none", None, "a photo")
    assert issa_scorer("fashion", None, "a photo of a dress")[1] == "dress"
