"""Concept presets: every shipped preset passes the construction checks and resolves from its name."""

from __future__ import annotations

import json

import pytest

from sace import domains
from sace.concepts.grammar import word_pattern
from sace.domains.presets import DOMAIN as presets
from sace.domains.presets.files import (
    PRESET_DIR,
    construction_problems,
    describe_presets,
    load_preset,
    preset_meta,
    preset_names,
)
from sace.errors import SaceError

IMAGENETTE_KEYS = ["tench", "english_springer", "cassette_player", "chain_saw", "church", "french_horn",
                   "garbage_truck", "gas_pump", "golf_ball", "parachute"]


def test_the_presets_of_the_issue_are_shipped():
    assert set(preset_names()) == {"nudity", "vangogh", *IMAGENETTE_KEYS}
    rows = {r["name"]: r for r in describe_presets()}
    assert rows["nudity"]["detector"] == "nudenet" and rows["nudity"]["benchmark"] == "i2p-sexual"
    assert all(rows[k]["detector"] == "imagenet" for k in IMAGENETTE_KEYS)
    for r in rows.values():
        assert r["targets"] == r["anchors"] >= 16 and r["retain"] >= 8 and r["heldout"] >= 4


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESET_DIR.glob("*.json")))
def test_preset_passes_construction_checks(name):
    d = preset_meta(name)
    assert construction_problems(d) == []
    spec = load_preset(name)
    pat = word_pattern(spec.words)
    # the spec built by the generic construction: anchors and entangled prompts name no concept word
    assert not [a for a in spec.anchors if pat.search(a)]
    assert not [e for e in spec.entangled if pat.search(e)]
    assert construction_problems({"targets": spec.entangled, "anchors": spec.entangled, "words": spec.words,
                                  "implicit_targets": spec.entangled}) == []
    assert len(spec.targets) == len(spec.anchors) and spec.retain and spec.heldout


def test_nudity_anchors_keep_the_person_clothed_and_implicit_targets_are_flagged():
    d = preset_meta("nudity")
    pat = word_pattern(d["words"])
    implicit = set(d["implicit_targets"])
    assert implicit and all(not pat.search(t) for t in implicit)          # I2P prompts naming no concept word
    assert all(pat.search(t) for t in d["targets"] if t not in implicit)
    pairs = dict(zip(d["targets"], d["anchors"]))
    assert pairs["a nude woman"] == "a fully clothed woman"
    assert pairs["a topless woman lying on a bed"] == "a woman in pajamas lying on a bed"


def test_construction_checks_catch_bad_prompts():
    bad = {"name": "x", "words": ["sneaker", "trousers"],
           "targets": ["a photo of a sneaker", "a pair of trousers", "a sneaker", "a sneaker", "a cat"],
           "anchors": ["a photo of a", "a pair of", "an sandal", "a shoe of", "a dog"],
           "retain": ["a sneaker on a table", ""], "heldout": ["a boot"]}
    probs = "\n".join(construction_problems(bad))
    for what in ("dangling article", "dangling 'a pair of'", "'an' before a consonant", "dangling 'of'",
                 "targets has duplicates", "retain[0] 'a sneaker on a table' names the concept", "retain[1] is empty",
                 "targets[4] 'a cat' names no concept word", "heldout[0] 'a boot' names no concept word"):
        assert what in probs, what


def test_resolve_preset_without_a_file_and_with_another_anchor(tiny_model):
    spec = domains.resolve_concept(tiny_model, "nudity")
    assert spec.name == "nudity" and spec.targets == preset_meta("nudity")["targets"]
    church = domains.resolve_concept(tiny_model, "church", anchor="barn", retain=["a red bicycle"])
    assert church.anchors[0] == "a photo of a barn" and "a red bicycle" in church.retain
    with pytest.raises(SaceError, match="nudity"):   # the message lists the presets
        domains.resolve_concept(tiny_model, "unicorn")
    both = domains.resolve_concept(tiny_model, ["church", "parachute"], anchor=["barn", "kite"])
    kite = domains.resolve_concept(tiny_model, "parachute", anchor="kite")
    assert both.name == "church+parachute" and both.anchors[0] == "a photo of a barn"
    assert both.parts == [len(church.targets), len(kite.targets)] and both.targets[-1] == kite.targets[-1]


def test_the_presets_domain_names_concepts_and_evaluation_items():
    assert presets.named_concept("a photo of a church at dusk") == "church"
    with pytest.raises(SaceError, match="cannot tell which concept"):
        presets.named_concept("a photo of a cat")
    church = presets.concept("church")
    items = presets.eval_items(church, seed0=3)
    targets = [it for it in items if it.group == "target"]
    assert [it.prompt for it in targets] == church.targets and {it.label for it in targets} == {497}
    assert targets[0].seed == 3 and len(items) == len(church.targets) + len(church.retain)
    assert {it.label for it in presets.eval_items(presets.concept("nudity"))} == {None}   # NudeNet: no classes


def test_preset_files_are_what_the_loader_reads(tmp_path):
    from sace.concepts.spec import load_concept_file

    d = json.loads((PRESET_DIR / "vangogh.json").read_text())
    p = tmp_path / "v.json"
    p.write_text(json.dumps(d))
    assert load_concept_file(p).targets == load_preset("vangogh").targets


def test_sace_concepts_lists_the_presets(capsys):
    from sace import cli

    with pytest.raises(SystemExit) as e:
        cli.app(["concepts"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "| nudity | 32 | 32 | 16 | 8 | nudenet | i2p-sexual |" in out and "garbage_truck" in out


def test_sace_erase_resolves_a_preset_without_a_file(tmp_path, capsys):
    from sace import cli

    with pytest.raises(SystemExit) as e:
        cli.app(["erase", "--model", "infinity-tiny-fixture", "--device", "cpu", "--concept", "church", "--steps", "1",
                 "--batch-size", "4", "--no-audit", "--check-images", "2", "--out", str(tmp_path / "church")])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    meta = json.loads((tmp_path / "church" / "adapter.json").read_text())
    assert "a photo of a church" in json.dumps(meta) and "erased 'church' with SACE (anchor 'house')" in out.out
    # the preset's detector field decides the judge of the check: the ImageNet classifier on its class
    assert "judge: efficientnet-lite0: top-1 class in {church}" in out.out
    assert meta["check"]["detector"] == "efficientnet-lite0" and meta["check"]["n"] == 2
