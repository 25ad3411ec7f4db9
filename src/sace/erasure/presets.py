"""Concept presets for text-to-image models, shipped as concept files in ``sace/assets/concepts/*.json``.

A preset is a concept file (the format of :func:`sace.erasure.concepts.load_concept_file`: ``name``,
``targets``, paired ``anchors``, ``retain``, ``heldout``, ``words``) plus metadata used by ``sace concepts``
and ``sace evaluate``: ``description``, ``detector`` (``nudenet``, ``imagenet`` or ``null``), ``benchmark``
(``i2p-sexual``, ``imagenette`` or ``null``), ``implicit_targets`` (targets that name no concept word, such
as the I2P prompts of the nudity preset) and, for objects, ``imagenet_index`` / ``benchmark_class``.

Presets: ``nudity``, ``vangogh`` and the ten Imagenette objects (``tench``, ``english_springer``,
``cassette_player``, ``chain_saw``, ``church``, ``french_horn``, ``garbage_truck``, ``gas_pump``,
``golf_ball``, ``parachute``; written by ``scripts/build_concept_presets.py``).

:func:`construction_problems` is the check every preset passes (tests/test_presets.py): anchors without
the concept words, no dangling ``of`` / article fragments left by a replacement, no empty or duplicate
prompts, and every target names a concept word unless it is listed in ``implicit_targets``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from ..errors import SaceError
from .concepts import ConceptSpec, _word_pattern, from_prompts, load_concept_file

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "concepts"

__all__ = ["PRESET_DIR", "preset_names", "preset_meta", "load_preset", "describe_presets",
           "construction_problems", "resolve_concept_or_preset"]


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


def load_preset(name: str) -> ConceptSpec:
    """The preset as a validated :class:`~sace.erasure.concepts.ConceptSpec` (through
    :func:`~sace.erasure.concepts.load_concept_file`, so presets and user files follow one path)."""
    key = name.strip().lower()
    d = _read(key)
    spec = load_concept_file(PRESET_DIR / f"{key}.json")
    return _clean_entangled(spec, d)


def _clean_entangled(spec: ConceptSpec, d: dict) -> ConceptSpec:
    # the generic construction deletes the concept words, which can leave "a photo of a"; such fragments are
    # not prompts a user would write, so they are dropped, and a preset may list well-formed ones itself
    keep = [e for e in spec.entangled if not _fragments(e)]
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


# fragments a noun-phrase replacement leaves behind when it removed too little or too much:
# "a pair of" / "of" / an article with nothing after it, or a doubled article
_DANGLING = [
    (re.compile(r"\b(?:a|an|the)\s+pair\s+of\s*(?:[,.;:!?]|$)", re.I), "dangling 'a pair of'"),
    (re.compile(r"\bof\s*(?:[,.;:!?]|$)", re.I), "dangling 'of'"),
    (re.compile(r"\b(?:a|an|the)\s*(?:[,.;:!?]|$)", re.I), "dangling article"),
    (re.compile(r"\b(?:a|an|the)\s+(?:a|an|the)\b", re.I), "doubled article"),
    (re.compile(r"\ba\s+[aeiou]\w*", re.I), "'a' before a vowel"),
    (re.compile(r"\ban\s+[b-df-hj-np-tv-z]\w*", re.I), "'an' before a consonant"),
    (re.compile(r"\s{2,}|^\s|\s$"), "stray whitespace"),
]
# words for which the initial-vowel article rule is wrong
_ARTICLE_EXCEPTIONS = re.compile(r"\ban?\s+(?:hour|honest|honou?r|heir|one|once|uni\w*|use\w*|euro\w*|u\b)",
                                 re.I)


def _fragments(text: str) -> list[str]:
    if _ARTICLE_EXCEPTIONS.search(text):
        return []   # the vowel rule does not apply; the other checks still run below without it
    return [why for pat, why in _DANGLING if pat.search(text)]


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
    pat = _word_pattern(words)
    implicit = set(d.get("implicit_targets", []))
    if len(targets) != len(anchors):
        out.append(f"{len(targets)} targets but {len(anchors)} anchors")
    for field in ("targets", "anchors", "retain", "heldout"):
        vals = list(d.get(field) or [])
        for i, v in enumerate(vals):
            if not isinstance(v, str) or not v.strip():
                out.append(f"{field}[{i}] is empty")
                continue
            for why in _fragments(v):
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


def resolve_concept_or_preset(concept=None, *, anchor=None, targets=(), retain=(),
                              concept_file: str | None = None, domain: str | None = None) -> ConceptSpec:
    """:func:`sace.erasure.concepts.resolve_concept`, with the shipped presets for models without a domain
    of built-in concepts (Infinity-2B/8B/125M, the tiny fixture): ``--concept nudity`` on ``infinity-2b``
    loads the ``nudity`` preset when no file or target prompts are given. ``anchor`` replaces the preset's
    anchor phrase (anchors rebuilt from the targets with the concept words replaced); ``retain`` prompts are
    added to the preset's.

    Args:
        domain: the model's domain (:func:`sace.domains.name_of`); a model with a domain (``fashion``)
            resolves through the domain's concepts, never through the presets.

    Raises:
        SaceError: as ``resolve_concept`` (unknown concept: the message lists the presets too).
    """
    from .concepts import merge_concepts, resolve_concept

    if concept_file or targets or domain or not concept:
        return resolve_concept(concept, anchor=anchor, targets=targets, retain=retain, concept_file=concept_file,
                               domain=domain)
    if not isinstance(concept, str):            # several --concept: one merged concept of the presets
        names = list(concept)
        anchors = [a for a in ([anchor] if isinstance(anchor, str) else list(anchor or [])) if a is not None]
        if anchors and len(anchors) != len(names):
            raise SaceError(f"{len(names)} concepts but {len(anchors)} anchors; give one --anchor per --concept, "
                            f"in order, or none (the presets' anchors)")
        anchors = anchors or [None] * len(names)
        if len(names) == 1:
            concept, anchor = names[0], anchors[0]
        else:
            return merge_concepts([resolve_concept_or_preset(n, anchor=a, retain=retain)
                                   for n, a in zip(names, anchors)])
    key = concept.strip().lower()
    if key not in preset_names():
        raise SaceError(f"no target prompts for concept {concept!r} (the model has no built-in concepts); use a "
                        f"preset ({', '.join(preset_names())}), or give --target PROMPT (repeatable) and --anchor "
                        "PHRASE, or --concept-file")
    if anchor is None:
        spec = load_preset(key)
    else:
        d = _read(key)
        spec = _clean_entangled(from_prompts(d["name"], d["targets"], anchor=anchor, retain=d.get("retain", []),
                                             heldout=d.get("heldout", []), words=d.get("words")), d)
    if retain:
        from ..models.text import check_prompts
        spec.retain = list(dict.fromkeys([*spec.retain, *check_prompts(list(retain))]))
    return spec
