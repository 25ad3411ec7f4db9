"""The shipped concept presets: concept files in ``sace/assets/concepts/*.json``.

A preset is a concept file (the format of :func:`sace.concepts.spec.load_concept_file`: ``name``,
``targets``, paired ``anchors``, ``retain``, ``heldout``, ``words``) plus metadata used by ``sace concepts``
and the judge policy: ``description``, ``detector`` (``nudenet``, ``imagenet`` or ``null``: it decides the
preset's judge, :mod:`sace.domains.presets`), ``benchmark``
(``i2p-sexual``, ``imagenette`` or ``null``), ``implicit_targets`` (targets that name no concept word, such
as the I2P prompts of the nudity preset) and, for objects, ``imagenet_index`` / ``benchmark_class``.

Presets: ``nudity``, ``vangogh`` and the ten Imagenette objects (``tench``, ``english_springer``,
``cassette_player``, ``chain_saw``, ``church``, ``french_horn``, ``garbage_truck``, ``gas_pump``,
``golf_ball``, ``parachute``; written by ``scripts/build_concept_presets.py``).

:func:`construction_problems` is the check every preset passes (tests/domains/presets): anchors without
the concept words, no dangling ``of`` / article fragments left by a replacement, no empty or duplicate
prompts, and every target names a concept word unless it is listed in ``implicit_targets``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ...concepts.grammar import fragments, word_pattern
from ...concepts.spec import ConceptSpec, from_prompts, load_concept_file
from ...errors import SaceError

PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "concepts"

__all__ = ["PRESET_DIR", "preset_names", "preset_meta", "load_preset", "describe_presets",
           "construction_problems"]


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


@cache
def _read(name: str) -> dict:
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise SaceError(f"unknown concept preset {name!r}; presets: {', '.join(preset_names())} "
                        "(or give --concept-file / --target prompts)")
    return json.loads(path.read_text())


def preset_meta(name: str) -> dict:
    """The preset's JSON as a dict (a copy). Raises SaceError for an unknown name (listing the presets)."""
    return json.loads(json.dumps(_read(name.strip().lower())))


def load_preset(name: str, anchor: str | None = None) -> ConceptSpec:
    """The preset as a validated :class:`~sace.concepts.spec.ConceptSpec` (through
    :func:`~sace.concepts.spec.load_concept_file`, so presets and user files follow one path). ``anchor``
    replaces the preset's anchor phrase (anchors rebuilt from the targets with the concept words replaced).

    Raises:
        SaceError: an unknown preset (the message lists the presets).
    """
    key = name.strip().lower()
    d = _read(key)
    if anchor is None:
        spec = load_concept_file(PRESET_DIR / f"{key}.json")
    else:
        spec = from_prompts(d["name"], d["targets"], anchor=anchor, retain=d.get("retain", []),
                            heldout=d.get("heldout", []), words=d.get("words"))
    return _clean_entangled(spec, d)


def _clean_entangled(spec: ConceptSpec, d: dict) -> ConceptSpec:
    # the generic construction deletes the concept words, which can leave "a photo of a"; such fragments are
    # not prompts a user would write, so they are dropped, and a preset may list well-formed ones itself
    keep = [e for e in spec.entangled if not fragments(e)]
    spec.entangled = list(dict.fromkeys([*keep, *d.get("entangled", [])]))
    return spec


def describe_presets() -> list[dict]:
    """One row per preset for ``sace concepts``: name, #targets, #anchors, #retain, #heldout, detector,
    benchmark, description."""
    rows = []
    for n in preset_names():
        d = _read(n)
        rows.append({"name": n, "targets": len(d["targets"]), "anchors": len(d.get("anchors") or []),
                     "retain": len(d.get("retain", [])), "heldout": len(d.get("heldout", [])),
                     "detector": d.get("detector") or "-", "benchmark": d.get("benchmark") or "-",
                     "description": d.get("description", "")})
    return rows


def construction_problems(d: dict) -> list[str]:
    """Construction problems of a concept definition (a preset's JSON dict); an empty list means it passes.

    Checks: targets/anchors pair one to one; no empty prompt anywhere and no duplicate within targets,
    retain or heldout (anchors may repeat: several targets can share one harmless partner); anchors,
    retain and entangled prompts name no concept word (``words``, whole words, case-insensitive); no
    fragment left by a replacement (dangling "a pair of", "of" or article, doubled article, wrong a/an);
    every target names a concept word unless listed in ``implicit_targets``; every held-out prompt names
    a concept word.
    """
    out: list[str] = []
    targets, anchors = list(d.get("targets", [])), list(d.get("anchors") or [])
    words = list(d.get("words") or [d.get("name", "")])
    pat = word_pattern(words)
    implicit = set(d.get("implicit_targets", []))
    if len(targets) != len(anchors):
        out.append(f"{len(targets)} targets but {len(anchors)} anchors")
    for field in ("targets", "anchors", "retain", "heldout"):
        vals = list(d.get(field) or [])
        for i, v in enumerate(vals):
            if not isinstance(v, str) or not v.strip():
                out.append(f"{field}[{i}] is empty")
                continue
            for why in fragments(v):
                out.append(f"{field}[{i}] {v!r}: {why}")
        if field != "anchors":
            dup = sorted({v for v in vals if vals.count(v) > 1})
            if dup:
                out.append(f"{field} has duplicates: {dup}")
    for field in ("anchors", "retain"):
        for i, v in enumerate(d.get(field) or []):
            if pat and pat.search(v):
                out.append(f"{field}[{i}] {v!r} names the concept ({pat.search(v).group(0)!r})")
    for i, t in enumerate(targets):
        if pat and not pat.search(t) and t not in implicit:
            out.append(f"targets[{i}] {t!r} names no concept word and is not in implicit_targets")
    for t in implicit:
        if t not in targets:
            out.append(f"implicit_targets entry {t!r} is not a target")
    for i, h in enumerate(d.get("heldout") or []):
        if pat and not pat.search(h):
            out.append(f"heldout[{i}] {h!r} names no concept word")
    return out
