"""Concept construction: anchors replace the whole noun phrase, targets are expanded over the concept's words,
entangled prompts are well-formed, the dry run writes the prompt sets."""

from __future__ import annotations

import json

import pytest

from sace.concepts.spec import (
    delete_words,
    expand_targets,
    from_prompts,
    load_concept_file,
    replace_words,
    write_prompt_sets,
)
from sace.domains.fashion import classes as fd
from sace.domains.fashion.concepts import fashion_concept


def test_trouser_anchors_have_no_dangling_pair_of():
    spec = fashion_concept("trouser", "dress")
    assert spec.anchors[0] == "a photo of a dress"
    assert all("pair of" not in a for a in spec.anchors)
    assert all(not fd.mentions_concept(a, "trouser") for a in spec.anchors)
    assert all(fd.mentions_concept(a, "dress") for a in spec.anchors)
    # the default anchor of every class is named in full, with a correct article
    for k in fd.CLASS_KEYS:
        s = fashion_concept(k)
        assert all(not fd.mentions_concept(a, k) for a in s.anchors)
        assert not any(" a a" in f" {a}" or " an a " in f" {a} " for a in s.anchors)
    assert fashion_concept("dress", "trouser").anchors[0] == "a photo of a pair of trousers"
    assert fashion_concept("sneaker", "ankle_boot").anchors[0] == "a photo of an ankle boot"


def test_entangled_prompts_are_well_formed():
    spec = fashion_concept("trouser")
    assert spec.entangled == ["a photo", "a picture", "an image", "a product photo", "a close-up photo",
                              "a black and white photo", "a catalog photo"]
    for e in spec.entangled:
        last = e.split()[-1]
        assert last not in {"a", "an", "of", "pair"}
    assert delete_words("running shoes on a white background", ["running shoes"]) == "a white background"
    assert delete_words("a photo of a cat on a sofa", ["cat"]) == "a photo on a sofa"


def test_replacement_keeps_number_and_articles():
    assert replace_words("a photo of a pair of trousers", ["trousers"], "a dress") == "a photo of a dress"
    assert replace_words("leather sandals, side view", ["sandals"], "a sneaker") == "leather sneakers, side view"
    assert replace_words("a photo of a sneaker", ["sneaker"], "ankle boot") == "a photo of an ankle boot"


def test_targets_expand_over_synonyms():
    words = ["cat", "cats", "kitten"]
    out = expand_targets(["a photo of a cat on a sofa"], words)
    assert out == ["a photo of a cat on a sofa", "a photo of cats on a sofa", "a photo of a kitten on a sofa"]
    spec = from_prompts("cat", ["a photo of a cat"], anchor="dog", words=words)
    assert spec.targets == ["a photo of a cat", "a photo of cats", "a photo of a kitten"]
    assert spec.anchors == ["a photo of a dog", "a photo of dogs", "a photo of a dog"]
    big = fashion_concept("sneaker", expand=96)
    assert len(big.targets) == 96 and big.targets[:48] == fd.training_captions("sneaker")
    assert all(fd.mentions_concept(t, "sneaker") for t in big.targets)
    assert {w for w in fd.concept_words("sneaker") if any(w in t for t in big.targets[48:])} - {
        w for w in fd.concept_words("sneaker") if any(w in t for t in big.targets[:48])}


def test_prompt_sets_round_trip(tmp_path):
    spec = fashion_concept("trouser")
    p = write_prompt_sets(spec, tmp_path / "prompts.json")
    d = json.loads(p.read_text())
    assert d["anchors"] == spec.anchors and d["entangled"] == spec.entangled
    back = load_concept_file(p)
    assert back.targets == spec.targets and back.anchors == spec.anchors and back.heldout == spec.heldout


def test_free_anchor_phrase_for_a_fashion_class():
    spec = fashion_concept("bag", "a plain white box")
    assert spec.anchors[0] == "a photo of a plain white box" and spec.anchor_name == "a plain white box"


def test_cli_dry_run_writes_prompt_sets(tmp_path):
    from typer.testing import CliRunner

    from sace.cli import app

    r = CliRunner().invoke(app, ["erase", "--concept", "trouser", "--dry-run", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "a photo of a dress" in r.output and "a photo of a pair of dress" not in r.output
    assert json.loads((tmp_path / "prompts.json").read_text())["anchors"][0] == "a photo of a dress"


@pytest.mark.parametrize("bad", [[], ["a photo of a cat"]])
def test_pairing_errors(bad):
    from sace.errors import SaceError
    with pytest.raises(SaceError, match="anchor"):
        from_prompts("cat", ["a photo of a cat", "cats"], anchors=bad)


def test_several_concepts_merge_into_one(tmp_path):
    from types import SimpleNamespace

    from sace.domains import resolve_concept
    from sace.errors import SaceError
    from sace.models.registry import get_spec

    fashion = SimpleNamespace(spec=get_spec("fashion"))   # the resolver reads the model's domain only
    spec = resolve_concept(fashion, ["sneaker", "trouser", "bag"])
    assert spec.name == "sneaker+trouser+bag" and spec.anchor_name == "sandal+dress+dress"
    assert len(spec.targets) == len(spec.anchors) == 3 * 48
    # no retain prompt names any of the erased classes; the other seven classes are all kept
    assert not [p for p in spec.retain for k in ("sneaker", "trouser", "bag") if fd.mentions_concept(p, k)]
    kept = {c for c in range(fd.NUM_CLASSES) for p in spec.retain if fd.mentions_concept(p, c)}
    assert kept == set(range(fd.NUM_CLASSES)) - {fd.class_index(k) for k in ("sneaker", "trouser", "bag")}
    with pytest.raises(SaceError, match="anchors"):
        resolve_concept(fashion, ["sneaker", "trouser"], anchor=["sandal"])
    two_anchors = resolve_concept(fashion, ["sneaker", "trouser"], anchor=["ankle_boot", "coat"])
    assert two_anchors.anchor_name == "ankle_boot+coat"
    # a concept file holding a list
    f = tmp_path / "two.json"
    f.write_text(json.dumps([{"name": "cat", "targets": ["a photo of a cat"], "anchor": "dog"},
                             {"name": "car", "targets": ["a red car"], "anchor": "bicycle",
                              "retain": ["a photo of a cat", "a tree"]}]))
    two = load_concept_file(f)
    assert two.name == "cat+car" and two.anchors == ["a photo of a dog", "a red bicycle"]
    assert two.retain == ["a tree"]
