"""Concept definitions: target prompts c*, paired anchor prompts c, retain prompts R, entangled prompts and
held-out paraphrases (``shared/docs/METHOD.md`` §1 notation).

Sources of a concept, in order of precedence:

* a JSON file ``{"name", "targets", "anchors"?, "anchor"?, "retain"?, "heldout"?, "words"?}``, or a list
  of such objects (``[...]`` or ``{"concepts": [...]}``) for one adapter erasing several concepts;
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


_DETERMINER = r"(?:(?:an?|the|one|a\s+pair\s+of|pairs\s+of)\s+)"
# function words that cannot end (or start) a well-formed prompt once the concept's noun phrase is gone
_DANGLING_END = {"a", "an", "the", "of", "pair", "with", "for", "on", "in", "at", "by", "and", "or", "to",
                 "from", "showing", "wearing"}
_DANGLING_START = {"of", "with", "for", "on", "in", "at", "by", "and", "or", "to", "from"}


def _word_pattern(words: Sequence[str], determiner: bool = False) -> re.Pattern | None:
    """Whole-word pattern of ``words`` (longest first; hyphens join words). ``determiner=True`` also takes
    the noun phrase's determiner ("a", "an", "the", "a pair of") into the match, as group ``det``."""
    words = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not words:
        return None
    det = rf"(?P<det>{_DETERMINER})?" if determiner else ""
    return re.compile(rf"(?<![\w-]){det}(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w-])",
                      re.IGNORECASE)


def _fix_articles(text: str) -> str:
    """``a apple`` -> ``an apple``, ``an sandal`` -> ``a sandal`` (initial-vowel heuristic)."""
    def rep(m: re.Match) -> str:
        art, word = m.group(1), m.group(2)
        vowel = word[0].lower() in "aeiou"
        new = ("an" if vowel else "a")
        new = new.capitalize() if art[0].isupper() else new
        return f"{new} {word}"
    return re.sub(r"\b(a|an|A|An)\s+([A-Za-z][\w-]*)", rep, text)


def split_determiner(phrase: str) -> tuple[str, str]:
    """``"a pair of trousers"`` -> ``("a pair of", "trousers")``, ``"dress"`` -> ``("", "dress")``."""
    m = re.match(rf"^\s*({_DETERMINER})?(.*?)\s*$", phrase, re.IGNORECASE)
    det = " ".join((m.group(1) or "").split()) if m else ""
    return det, (m.group(2) if m else phrase).strip()


def is_plural(noun: str) -> bool:
    """Heuristic plural test of a noun phrase's head word (``"running shoes"`` yes, ``"dress"`` no)."""
    w = noun.strip().lower().split()[-1] if noun.strip() else ""
    return w.endswith("s") and not w.endswith(("ss", "us", "is"))


def pluralise(noun: str) -> str:
    """English plural of a noun phrase's head word (regular rules; ``"dress"`` -> ``"dresses"``)."""
    if is_plural(noun):
        return noun
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def noun_phrase(phrase: str, with_determiner: bool = True, plural: bool = False) -> str:
    """The phrase as a noun phrase: its own determiner if it has one, else ``a``/``an`` for a singular noun
    and none for a plural (``"dress"`` -> ``"a dress"``, ``"jeans"`` -> ``"jeans"``); without determiner
    when ``with_determiner`` is False, then plural when ``plural`` (``"a dress"`` -> ``"dresses"``)."""
    det, noun = split_determiner(phrase)
    if not with_determiner:
        return pluralise(noun) if plural else noun
    if det:
        return f"{det} {noun}"
    if is_plural(noun):
        return noun
    return _fix_articles(f"a {noun}")


def replace_words(text: str, words: Sequence[str], phrase: str) -> str:
    """Replace every whole noun phrase naming the concept (``words``, with its determiner) by ``phrase``.

    The determiner goes with the noun: ``"a photo of a pair of trousers"`` -> ``"a photo of a dress"`` (not
    ``"a pair of dress"``); a bare noun is replaced by the bare anchor noun (``"leather sandals, side view"``
    -> ``"leather sneakers, side view"``, a plural noun by the plural anchor); articles are fixed afterwards
    (``a ankle boot`` -> ``an ankle boot``).
    """
    pat = _word_pattern(words, determiner=True)
    if pat is None:
        return text

    def rep(m: re.Match) -> str:
        det = bool(m.group("det"))
        return noun_phrase(phrase, with_determiner=det, plural=not det and is_plural(m.group(0)))

    return " ".join(_fix_articles(pat.sub(rep, text)).split())


def _strip_dangling(text: str) -> str:
    toks = text.replace(" ,", ",").split()
    changed = True
    while toks and changed:
        changed = False
        end = toks[-1].rstrip(",;:").lower()
        if end in _DANGLING_END or not end:
            toks.pop()
            changed = True
        elif toks[-1][-1:] in ",;:":
            toks[-1] = toks[-1][:-1]
            changed = True
        if toks and (toks[0].lower().strip(",;:") in _DANGLING_START or toks[0] in {",", ";", ":"}):
            toks.pop(0)
            changed = True
    out = " ".join(toks)
    return re.sub(r"^[,;:\s]+", "", out)


def delete_words(text: str, words: Sequence[str]) -> str:
    """``text`` without the concept's noun phrases, as a well-formed prompt: the determiner goes with the
    noun and dangling function words at either end are dropped (``"a photo of a pair of trousers"`` ->
    ``"a photo"``, ``"running shoes on a white background"`` -> ``"a white background"``); may be empty."""
    pat = _word_pattern(words, determiner=True)
    if pat is None:
        return text
    out = re.sub(r"\s+([,.;:!?])", r"\1", pat.sub(" ", text))
    out = re.sub(r"([,;:])\s*(?=[,;:]|$)", "", " ".join(out.split()))
    # a preposition left before another one ("a photo of on a sofa" -> "a photo on a sofa")
    out = re.sub(r"\b(?:of|with|for)\s+(?=(?:on|in|at|by|with|for|from)\b)", "", out, flags=re.IGNORECASE)
    out = " ".join(out.split())
    return _strip_dangling(out)


def expand_targets(targets: Sequence[str], words: Sequence[str], limit: int = 256) -> list[str]:
    """The target prompts expanded over the concept's synonyms: every distinct sentence frame of
    ``targets`` (the prompt with its concept noun phrase taken out) is filled with every word of ``words``
    (with ``a``/``an`` for a singular word, none for a plural). The original targets come first; at most
    ``limit`` prompts (frames are filled word by word, round-robin, so every word appears before the cap)."""
    out = list(dict.fromkeys(targets))
    pat = _word_pattern(words, determiner=True)
    if pat is None:
        return out
    frames = []
    for t in targets:
        m = pat.search(t)
        if m is not None:
            frames.append((t[: m.start()], t[m.end():], bool(m.group("det"))))
    frames = list(dict.fromkeys(frames))
    seen = set(out)
    for w in sorted({w.strip().lower() for w in words if w.strip()}, key=lambda x: (len(x), x)):
        for pre, post, det in frames:
            if len(out) >= limit:
                return out
            cand = " ".join(_fix_articles(pre + noun_phrase(w, det) + post).split())
            if cand not in seen:
                seen.add(cand)
                out.append(cand)
    return out


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
        pat = _word_pattern(words)
        anchors = [replace_words(t, words, anchor) if pat and pat.search(t) else noun_phrase(anchor)
                   for t in targets]
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


def resolve_concept(concept: str | Sequence[str] | None = None, *, anchor: str | Sequence[str] | None = None,
                    targets: Sequence[str] = (), retain: Sequence[str] = (), concept_file: str | None = None,
                    domain: str | None = None) -> ConceptSpec:
    """The concept from a file, from flags, or from the built-in concepts of ``domain`` (the name a model's
    ``model.json`` gives, see :func:`sace.domains.name_of`).

    Several names (a list; ``--concept`` repeated) give one merged concept (:func:`merge_concepts`), each
    with the anchor at its position in ``anchor`` (a list) or its default anchor.

    Raises:
        SaceError: unknown concept (lists the known ones), missing targets or anchor.
    """
    if concept_file:
        return load_concept_file(concept_file)
    names = [concept] if isinstance(concept, str) else list(concept or [])
    anchors = [a for a in ([anchor] if isinstance(anchor, str) else list(anchor or [])) if a is not None]
    if anchors and len(anchors) != max(1, len(names)):
        raise SaceError(f"{len(names)} concept(s) but {len(anchors)} anchors; give one --anchor per --concept, "
                        f"in order, or none (default anchors)")
    if len(names) > 1:
        if targets:
            raise SaceError("several --concept with --target prompts: put each concept in a concept file "
                            "(a JSON list) instead")
        anchors = anchors or [None] * len(names)
        return merge_concepts([resolve_concept(n, anchor=a, retain=retain, domain=domain)
                               for n, a in zip(names, anchors)])
    concept = names[0] if names else None
    anchor = anchors[0] if anchors else None
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


def write_prompt_sets(spec: ConceptSpec, path: str | os.PathLike) -> Path:
    """Write the concept's prompt sets (what training would use) as JSON, atomically; returns the path.
    The file is a valid ``--concept-file`` (explicit paired anchors)."""
    from ..io import write_json

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
    pat = _word_pattern(words)
    targets = {t for s in specs for t in s.targets}
    retain = [p for s in specs for p in s.retain if p not in targets and not (pat and pat.search(p))]
    return ConceptSpec(
        "+".join(names), [t for s in specs for t in s.targets], [a for s in specs for a in s.anchors],
        list(dict.fromkeys(retain)), list(dict.fromkeys(e for s in specs for e in s.entangled)),
        list(dict.fromkeys(h for s in specs for h in s.heldout)), words,
        "+".join(s.anchor_name or "-" for s in specs), [len(s.targets) for s in specs]).validate()

