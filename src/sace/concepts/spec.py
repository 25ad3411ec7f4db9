"""The concept type: target prompts c*, paired anchor prompts c, retain prompts R, entangled prompts and
held-out paraphrases (``shared/docs/METHOD.md`` §1 notation), built from prompts or read from a concept file.

A concept file is ``{"name", "targets", "anchors"?, "anchor"?, "retain"?, "heldout"?, "words"?}``, or a list
of such objects (``[...]`` or ``{"concepts": [...]}``) for one adapter erasing several concepts. Which concept
a command means (a file, ``--target`` prompts, a domain's built-in concept or a shipped preset) is decided by
the one resolver of the domain registry, :func:`sace.domains.resolve_concept`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SaceError
from ..io import write_json
from ..models.text import check_prompts
from .grammar import delete_words, expand_targets, noun_phrase, replace_words, word_pattern

__all__ = ["ConceptSpec", "check_words", "from_prompts", "load_concept_file", "merge_concepts",
           "write_prompt_sets", "has_context_prompts"]


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
        parts: for a merged concept (:func:`merge_concepts`), the number of target/anchor pairs of each part,
            in order (empty for a single concept); training draws its batches per part.
    """

    name: str
    targets: list[str]
    anchors: list[str]
    retain: list[str] = field(default_factory=list)
    entangled: list[str] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    anchor_name: str = ""
    parts: list[int] = field(default_factory=list)

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
        if self.parts and (sum(self.parts) != len(self.targets) or min(self.parts) < 1):
            raise SaceError(f"concept {self.name!r}: parts {self.parts} do not add up to its {len(self.targets)} "
                            f"target prompts")
        for lst in (self.retain, self.entangled, self.heldout):
            if lst:
                check_prompts(lst)
        return self

    def preservation_prompts(self, context: bool = True) -> list[str]:
        """P = anchors + retain + entangled (the null condition is added by the trainer), deduplicated;
        ``context=False`` leaves out the entangled prompts (a class-conditional model has no context-only
        prompt: its null class plays that role)."""
        return list(dict.fromkeys([*self.anchors, *self.retain, *(self.entangled if context else [])]))

    def to_dict(self) -> dict:
        return asdict(self)


def from_prompts(name: str, targets: Sequence[str], anchor: str | None = None,
                 anchors: Sequence[str] | None = None, retain: Sequence[str] = (), heldout: Sequence[str] = (),
                 words: Sequence[str] | None = None, expand: bool = True) -> ConceptSpec:
    """Build a concept from target prompts and an anchor phrase (or explicit paired anchors).

    With an anchor phrase, the targets are first expanded over the concept's words (:func:`expand_targets`;
    ``expand=False`` keeps them as given); anchors replace each target's concept noun phrase by the anchor
    phrase (default words: the concept name); a target that does not mention them is paired with the anchor
    phrase alone, so every target has a harmless partner. Entangled prompts are the targets with the concept
    noun phrases deleted (well-formed, :func:`delete_words`); empty ones are dropped.
    """
    targets = check_prompts(targets)
    words = list(words) if words else [name]
    if anchors is None:
        if not anchor:
            raise SaceError(f"concept {name!r}: give an anchor phrase (--anchor) or paired anchor prompts")
        if expand:
            targets = expand_targets(targets, words)
        pat = word_pattern(words)
        anchors = [replace_words(t, words, anchor) if pat and pat.search(t) else noun_phrase(anchor)
                   for t in targets]
    entangled = [e for e in (delete_words(t, words) for t in targets) if e.strip()]
    return ConceptSpec(name, list(targets), list(anchors), list(retain), list(dict.fromkeys(entangled)),
                       list(heldout), list(words), anchor or "").validate()


def load_concept_file(path: str | os.PathLike) -> ConceptSpec:
    """Read a concept JSON file (see the module docstring). Raises SaceError on missing fields."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise SaceError(f"concept file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise SaceError(f"concept file {p} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise SaceError(f"concept file {p} is not valid JSON ({e})") from None
    except OSError as e:   # a folder, unreadable
        raise SaceError(f"cannot read concept file {p} ({e.strerror or e})") from None
    if isinstance(d, dict) and isinstance(d.get("concepts"), list):
        d = d["concepts"]
    if isinstance(d, list):
        # several concepts, one adapter: each entry is a concept object as below
        return merge_concepts([_concept_from_dict(x, p) for x in d])
    return _concept_from_dict(d, p)


def _concept_from_dict(d, p: Path) -> ConceptSpec:
    if not isinstance(d, dict) or "name" not in d or "targets" not in d:
        raise SaceError(f"concept file {p} needs at least 'name' and 'targets' (per concept)")
    return from_prompts(d["name"], d["targets"], anchor=d.get("anchor"), anchors=d.get("anchors"),
                        retain=d.get("retain", []), heldout=d.get("heldout", []), words=d.get("words"))


def write_prompt_sets(spec: ConceptSpec, path: str | os.PathLike) -> Path:
    """Write the concept's prompt sets (what training would use) as JSON, atomically; returns the path.
    The file is a valid ``--concept-file`` (explicit paired anchors)."""
    d = spec.to_dict()
    d["preservation"] = spec.preservation_prompts()
    write_json(Path(path), d)
    return Path(path)


def has_context_prompts(model) -> bool:
    """Whether ``model`` takes context-only prompts (the entangled set, "a photo"): text-conditional models do;
    a class-conditional one does not (its null class plays that role), so training and the audit leave the
    entangled prompts out there."""
    return not getattr(model, "class_conditional", False)


def merge_concepts(specs: Sequence[ConceptSpec]) -> ConceptSpec:
    """Several concepts as one, for a single adapter that erases them all: target/anchor pairs concatenated;
    entangled, held-out prompts and words united; retain prompts united minus every prompt that names one of
    the concepts (sneaker's retain set holds trouser captions, which a sneaker+trouser adapter must erase).
    The name joins the parts with ``+`` (``"sneaker+trouser"``).

    Raises:
        SaceError: no concept, or the same concept twice.
    """
    specs = list(specs)
    if not specs:
        raise SaceError("no concept to merge")
    if len(specs) == 1:
        return specs[0]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SaceError(f"concept named twice: {', '.join(names)}")
    words = list(dict.fromkeys(w for s in specs for w in (s.words or [s.name])))
    pat = word_pattern(words)
    targets = {t for s in specs for t in s.targets}
    retain = [p for s in specs for p in s.retain if p not in targets and not (pat and pat.search(p))]
    return ConceptSpec(
        "+".join(names), [t for s in specs for t in s.targets], [a for s in specs for a in s.anchors],
        list(dict.fromkeys(retain)), list(dict.fromkeys(e for s in specs for e in s.entangled)),
        list(dict.fromkeys(h for s in specs for h in s.heldout)), words,
        "+".join(s.anchor_name or "-" for s in specs), [len(s.targets) for s in specs]).validate()


def check_words(spec: ConceptSpec) -> None:
    """Static checks of a concept's prompt sets that need no model (the audit's model-based checks come later,
    this catches the plain mistakes in a fraction of a second): an anchor prompt equal to its target, an anchor
    phrase or anchor prompt that names the concept (a word of ``words``, else the name, as a whole word), a
    retain prompt that is also a target.

    Raises:
        SaceError: one line naming the first offending prompt and the fix.
    """
    norm = lambda p: " ".join(p.lower().split())
    for t, a in zip(spec.targets, spec.anchors):
        if norm(t) == norm(a):
            raise SaceError(f"concept {spec.name!r}: the anchor prompt {a!r} is its target prompt; an anchor must "
                            f"replace the concept (give another --anchor)")
    words = [w for w in (spec.words or [spec.name]) if w.strip()]
    pats = [re.compile(rf"(?<![\w-]){re.escape(w.strip().lower())}(?![\w-])") for w in words]
    named = lambda text: next((w for w, p in zip(words, pats) if p.search(text.lower())), None)
    for text in ([spec.anchor_name] if spec.anchor_name else []) + list(dict.fromkeys(spec.anchors)):
        w = named(text)
        if w is not None:
            raise SaceError(f"concept {spec.name!r}: the anchor {text!r} names the concept ({w!r}); an anchor must "
                            f"be something else (give another --anchor)")
    targets = {norm(t) for t in spec.targets}
    for r in spec.retain:
        if norm(r) in targets:
            raise SaceError(f"concept {spec.name!r}: the retain prompt {r!r} is also a target prompt; a prompt "
                            f"cannot be both erased and preserved (drop it from --retain)")
