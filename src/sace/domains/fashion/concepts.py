"""Fashion-MNIST classes as erasure concepts and as evaluation sets (``shared/docs/METHOD.md`` §1, §5).

A class becomes a :class:`~sace.erasure.concepts.ConceptSpec` built from the project's caption sets:
targets are the class's training captions, anchors the same captions with the class noun replaced by the
anchor's, retain the canonical captions of the other classes, held-out the class's held-out paraphrases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...erasure.concepts import ConceptSpec, replace_words
from ...errors import SaceError
from ...evaluation.harness import EvalItem
from . import classes as fc
from .data import load_split, model_to_unit, to_model_images

__all__ = ["DEFAULT_ANCHORS", "FOOTWEAR", "fashion_concept", "eval_items", "real_images", "neighbours"]

DEFAULT_ANCHORS: dict[str, str] = {
    "sneaker": "sandal", "sandal": "sneaker", "ankle_boot": "sneaker", "tshirt": "shirt", "shirt": "tshirt",
    "pullover": "coat", "coat": "pullover", "dress": "coat", "trouser": "dress", "bag": "pullover"}
"""The nearest class of every class (the default anchor when none is given)."""

FOOTWEAR: tuple[str, ...] = ("sandal", "sneaker", "ankle_boot")
"""The classes entangled with each other, reported separately as neighbours in the evaluation table."""


def fashion_concept(target: str, anchor: str | None = None, retain_per_class: int = 8) -> ConceptSpec:
    """A Fashion-MNIST class as a concept for the embedded ``fashion`` model.

    targets: the class's 48 training captions; anchors: the same captions with the class noun replaced by
    the anchor class's canonical noun (default anchor: :data:`DEFAULT_ANCHORS`, e.g. sneaker -> sandal);
    retain: ``retain_per_class`` captions (template x canonical noun) of every class but the target and
    the anchor; heldout: the class's held-out paraphrases.

    Raises:
        SaceError: unknown class, or the anchor is the concept itself.
    """
    t = fc.class_index(target)
    a = fc.class_index(anchor if anchor else DEFAULT_ANCHORS[fc.class_key(t)])
    if a == t:
        raise SaceError(f"the anchor must differ from the concept ({fc.class_key(t)})")
    words = fc.concept_words(t)
    anchor_np = fc.canonical_name(a)
    targets = fc.training_captions(t)
    # the anchor's noun phrase without its article ("an ankle boot" -> "ankle boot", "a pair of trousers" ->
    # "pair of trousers"); articles are re-fixed after the replacement
    noun = anchor_np.split(" ", 1)[1] if anchor_np.startswith(("a ", "an ")) else anchor_np
    # "a pair of trousers" -> "a dress", not "a pair of dress" (which the model draws as trousers)
    anchors = [replace_words(c, [f"pair of {w}" for w in words] + words, noun) for c in targets]
    retain = []
    for c in range(fc.NUM_CLASSES):
        if c in (t, a):
            continue
        retain += [tpl.format(fc.canonical_name(c)) for tpl in fc.TRAINING_TEMPLATES[:retain_per_class]]
    entangled = [e for e in (fc.remove_concept_words(c, t) for c in targets) if e.strip()]
    return ConceptSpec(fc.class_key(t), targets, anchors, retain, list(dict.fromkeys(entangled)),
                       fc.heldout_captions(t), words, fc.class_key(a)).validate()


def eval_items(concept_key: str, n_per_class: int = 50, n_heldout: int = 50, seed0: int = 0) -> list[EvalItem]:
    """The fashion evaluation set: ``n_per_class`` images per class from the training captions (cycled) and
    ``n_heldout`` images of the erased class from its held-out paraphrases; seeds ``seed0 + i`` (held-out:
    ``seed0 + 10000 + i``). Raises SaceError for an unknown class."""
    t = fc.class_index(concept_key)
    items = []
    for c in range(fc.NUM_CLASSES):
        caps = fc.training_captions(c)
        items += [EvalItem(caps[i % len(caps)], seed0 + i, c, "target" if c == t else "other")
                  for i in range(n_per_class)]
    held = fc.heldout_captions(t)
    items += [EvalItem(held[i % len(held)], seed0 + 10_000 + i, t, "heldout") for i in range(n_heldout)]
    return items


def real_images(n_per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n_per_class`` random test-split images per class (drawn with ``seed``), in the generator's padded
    32x32 form mapped to [0, 1]: float32 ``(10 * n_per_class, 3, 32, 32)`` and int64 labels."""
    imgs, labels = load_split("test")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(fc.NUM_CLASSES):
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    keep = torch.cat(keep)
    return model_to_unit(to_model_images(imgs[keep])), labels[keep]


def neighbours(concept: ConceptSpec) -> tuple[list[int], list[int]]:
    """``(erased, neighbours)``: the concept's class, and the anchor (first) plus the footwear classes that
    are not erased."""
    erased = [fc.class_index(concept.name)]
    near = [fc.class_index(x) for x in FOOTWEAR if fc.class_index(x) not in erased]
    if concept.anchor_name and fc.class_index(concept.anchor_name) not in near + erased:
        near.insert(0, fc.class_index(concept.anchor_name))
    return erased, near
