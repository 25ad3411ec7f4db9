"""Concept definitions: target prompts c*, paired anchor prompts c, retain prompts R, entangled prompts and
held-out paraphrases (``shared/docs/METHOD.md`` §1 notation).

Sources of a concept, in order of precedence:

* a JSON file ``{"name", "targets", "anchors"?, "anchor"?, "retain"?, "heldout"?, "words"?}``;
* flags: ``--concept NAME --target PROMPT... --anchor PHRASE --retain PROMPT...``;
* the built-in concepts of the model's domain (``--concept sneaker --anchor sandal`` on the embedded
  model), asked of :func:`sace.domains.get`; the core never builds a domain's concepts itself.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import domains
from ..errors import SaceError
from ..models.text import check_prompts


@dataclass
class ConceptSpec:
    """A concept to erase.

    Attributes:
        name: short name (``"sneaker"``, ``"nudity"``).
        targets: prompts that contain the concept (c*).
        anchors: paired prompts with the concept replaced by a harmless anchor phrase (c), same length.
        retain: unrelated prompts whose outputs must not change (R).
        entangled: the targets with the concept words deleted (benign context entangled with the concept).
        heldout: paraphrases never used for training (evaluation of generalisation).
        words: words/phrases naming the concept (used to build anchors and entangled prompts).
        anchor_name: the anchor phrase (for reports).
    """

    name: str
    targets: list[str]
    anchors: list[str]
    retain: list[str] = field(default_factory=list)
    entangled: list[str] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    anchor_name: str = ""

    def validate(self) -> ConceptSpec:
        if not self.name.strip():
            raise SaceError("the concept needs a name")
        self.targets = check_prompts(self.targets) if self.targets else []
        if not self.targets:
            raise SaceError(f"concept {self.name!r} has no target prompts; give --target or a concept file")
        if len(self.anchors) != len(self.targets):
            raise SaceError(f"concept {self.name!r}: {len(self.anchors)} anchor prompts for {len(self.targets)} "
                            f"targets; anchors must pair with targets one to one")
        check_prompts(self.anchors)
        for lst in (self.retain, self.entangled, self.heldout):
            if lst:
                check_prompts(lst)
        return self

    def preservation_prompts(self) -> list[str]:
        """P = anchors + retain + entangled (the null condition is added by the trainer), deduplicated."""
        return list(dict.fromkeys([*self.anchors, *self.retain, *self.entangled]))

    def to_dict(self) -> dict:
        return asdict(self)


def _word_pattern(words: Sequence[str]) -> re.Pattern | None:
    words = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w-])", re.IGNORECASE)


def _fix_articles(text: str) -> str:
    """``a apple`` -> ``an apple``, ``an sandal`` -> ``a sandal`` (initial-vowel heuristic)."""
    def rep(m: re.Match) -> str:
        art, word = m.group(1), m.group(2)
        vowel = word[0].lower() in "aeiou"
        new = ("an" if vowel else "a")
        new = new.capitalize() if art[0].isupper() else new
        return f"{new} {word}"
    return re.sub(r"\b(a|an|A|An)\s+([A-Za-z][\w-]*)", rep, text)


def replace_words(text: str, words: Sequence[str], phrase: str) -> str:
    """Replace every whole-word occurrence of ``words`` in ``text`` by ``phrase`` and fix articles."""
    pat = _word_pattern(words)
    if pat is None:
        return text
    out = pat.sub(phrase, text)
    return " ".join(_fix_articles(out).split())


def delete_words(text: str, words: Sequence[str]) -> str:
    pat = _word_pattern(words)
    if pat is None:
        return text
    out = re.sub(r"\s+([,.;:!?])", r"\1", pat.sub(" ", text))
    return " ".join(out.split())


def from_prompts(name: str, targets: Sequence[str], anchor: str | None = None,
                 anchors: Sequence[str] | None = None, retain: Sequence[str] = (), heldout: Sequence[str] = (),
                 words: Sequence[str] | None = None) -> ConceptSpec:
    """Build a concept from target prompts and an anchor phrase (or explicit paired anchors).

    Anchors replace the concept words (default: the concept name) by the anchor phrase; a target that does
    not mention them is paired with the anchor phrase alone, so every target has a harmless partner.
    Entangled prompts are the targets with the concept words deleted.
    """
    targets = check_prompts(targets)
    words = list(words) if words else [name]
    if anchors is None:
        if not anchor:
            raise SaceError(f"concept {name!r}: give an anchor phrase (--anchor) or paired anchor prompts")
        pat = _word_pattern(words)
        anchors = [replace_words(t, words, anchor) if pat and pat.search(t) else anchor for t in targets]
    entangled = [e for e in (delete_words(t, words) for t in targets) if e.strip()]
    return ConceptSpec(name, list(targets), list(anchors), list(retain), list(dict.fromkeys(entangled)),
                       list(heldout), list(words), anchor or "").validate()


def load_concept_file(path: str | os.PathLike) -> ConceptSpec:
    """Read a concept JSON file (see the module docstring). Raises SaceError on missing fields."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise SaceError(f"concept file not found: {p}") from e
    except json.JSONDecodeError as e:
        raise SaceError(f"concept file {p} is not valid JSON ({e})") from e
    if not isinstance(d, dict) or "name" not in d or "targets" not in d:
        raise SaceError(f"concept file {p} needs at least 'name' and 'targets'")
    return from_prompts(d["name"], d["targets"], anchor=d.get("anchor"), anchors=d.get("anchors"),
                        retain=d.get("retain", []), heldout=d.get("heldout", []), words=d.get("words"))


def resolve_concept(concept: str | None = None, *, anchor: str | None = None, targets: Sequence[str] = (),
                    retain: Sequence[str] = (), concept_file: str | None = None,
                    domain: str | None = None) -> ConceptSpec:
    """The concept from a file, from flags, or from the built-in concepts of ``domain`` (the name a model's
    ``model.json`` gives, see :func:`sace.domains.name_of`).

    Raises:
        SaceError: unknown concept (lists the known ones), missing targets or anchor.
    """
    if concept_file:
        return load_concept_file(concept_file)
    if not concept:
        raise SaceError("name the concept to erase (--concept NAME) or give --concept-file")
    if targets:
        return from_prompts(concept, targets, anchor=anchor, retain=retain)
    if domain:
        spec = domains.get(domain).concept(concept, anchor)
        if retain:
            spec.retain = list(dict.fromkeys([*spec.retain, *check_prompts(retain)]))
        return spec
    raise SaceError(f"no target prompts for concept {concept!r} (the model names no domain with built-in "
                    "concepts); give --target PROMPT (repeatable) and --anchor PHRASE, or --concept-file")
