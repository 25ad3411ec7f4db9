"""The prompt grammar of concepts: find, replace and delete the noun phrase that names a concept, with its
determiner, and keep the prompt well formed (articles, dangling function words).

Used to build anchors (``"a photo of a pair of trousers"`` -> ``"a photo of a dress"``), entangled prompts
(``"a photo"``) and target expansions over a concept's synonyms; :func:`fragments` names what a replacement
can leave behind, which the shipped presets are checked against.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["word_pattern", "split_determiner", "is_plural", "pluralise", "noun_phrase", "replace_words",
           "delete_words", "expand_targets", "fix_articles", "fragments"]

_DETERMINER = r"(?:(?:an?|the|one|a\s+pair\s+of|pairs\s+of)\s+)"
# function words that cannot end (or start) a well-formed prompt once the concept's noun phrase is gone
_DANGLING_END = {"a", "an", "the", "of", "pair", "with", "for", "on", "in", "at", "by", "and", "or", "to",
                 "from", "showing", "wearing"}
_DANGLING_START = {"of", "with", "for", "on", "in", "at", "by", "and", "or", "to", "from"}


def word_pattern(words: Sequence[str], determiner: bool = False) -> re.Pattern | None:
    """Whole-word pattern of ``words`` (longest first; hyphens join words). ``determiner=True`` also takes
    the noun phrase's determiner ("a", "an", "the", "a pair of") into the match, as group ``det``."""
    words = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not words:
        return None
    det = rf"(?P<det>{_DETERMINER})?" if determiner else ""
    return re.compile(rf"(?<![\w-]){det}(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w-])",
                      re.IGNORECASE)


def fix_articles(text: str) -> str:
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
    return fix_articles(f"a {noun}")


def replace_words(text: str, words: Sequence[str], phrase: str) -> str:
    """Replace every whole noun phrase naming the concept (``words``, with its determiner) by ``phrase``.

    The determiner goes with the noun: ``"a photo of a pair of trousers"`` -> ``"a photo of a dress"`` (not
    ``"a pair of dress"``); a bare noun is replaced by the bare anchor noun (``"leather sandals, side view"``
    -> ``"leather sneakers, side view"``, a plural noun by the plural anchor); articles are fixed afterwards
    (``a ankle boot`` -> ``an ankle boot``).
    """
    pat = word_pattern(words, determiner=True)
    if pat is None:
        return text

    def rep(m: re.Match) -> str:
        det = bool(m.group("det"))
        return noun_phrase(phrase, with_determiner=det, plural=not det and is_plural(m.group(0)))

    return " ".join(fix_articles(pat.sub(rep, text)).split())


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
    pat = word_pattern(words, determiner=True)
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
    pat = word_pattern(words, determiner=True)
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
            cand = " ".join(fix_articles(pre + noun_phrase(w, det) + post).split())
            if cand not in seen:
                seen.add(cand)
                out.append(cand)
    return out


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


def fragments(text: str) -> list[str]:
    """What a noun-phrase replacement left broken in ``text`` (dangling "a pair of", "of" or article, doubled
    article, wrong a/an, stray whitespace), one short reason each; empty when it reads well."""
    if _ARTICLE_EXCEPTIONS.search(text):
        return []   # the vowel rule does not apply; the other checks still run below without it
    return [why for pat, why in _DANGLING if pat.search(text)]
