"""Fashion-MNIST classes as erasure concepts and as evaluation sets (``shared/docs/METHOD.md`` §1, §5).

A class becomes a :class:`~sace.concepts.spec.ConceptSpec` built from the project's caption sets:
targets are the class's training captions, anchors the same captions with the class's noun phrase replaced by
the anchor's, retain the canonical captions of the other classes, entangled the captions' sentence frames,
held-out the class's held-out paraphrases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...concepts.grammar import delete_words, expand_targets, replace_words
from ...concepts.items import EvalItem
from ...concepts.spec import ConceptSpec
from ...errors import SaceError
from . import classes as fc
from .data import load_split, model_to_unit, to_model_images

__all__ = ["DEFAULT_ANCHORS", "FOOTWEAR", "TOPS", "NEIGHBOUR_RETAIN", "neighbour_classes", "fashion_concept",
           "eval_items", "real_images", "neighbours"]

DEFAULT_ANCHORS: dict[str, str] = {
    "sneaker": "sandal", "sandal": "sneaker", "ankle_boot": "sneaker", "tshirt": "pullover", "shirt": "tshirt",
    "pullover": "coat", "coat": "pullover", "dress": "coat", "trouser": "dress", "bag": "dress"}
"""The default anchor of every class: a nearby class the frozen model draws reliably (own class accuracy
>= 90%, so not "shirt", which the classifier gets right for only ~50-80% of its images: t-shirt's anchor is
pullover) and that does not draw the target (``sace audit`` checks it); measured with
``benchmarks/erase_every_class.py`` (bag: pullover cost the other classes 3.6 points, mostly shirt; dress 0.2,
sandal -0.4, at ACC_e 0%). A model folder may override entries (``model.json`` ``defaults.anchors``,
:func:`sace.domains.default_anchor`): the embedded ``fashion`` anchors coat to dress (pullover cost shirt 1.6-2.0
points), ``fashion-var`` anchors pullover and dress to t-shirt (it draws coats right only ~82% of the time)."""

FOOTWEAR: tuple[str, ...] = ("sandal", "sneaker", "ankle_boot")
"""The classes entangled with each other, reported separately as neighbours in the evaluation table."""

TOPS: tuple[str, ...] = ("tshirt", "shirt", "pullover", "coat")
"""The upper-body garments, Fashion-MNIST's well-known confusion group (shirt is mistaken for each of the
others; pullover and coat for each other)."""

NEIGHBOUR_RETAIN: int = 48
"""Retain captions per *neighbour* class (a class in the target's group, :data:`FOOTWEAR` or :data:`TOPS`):
its first ``NEIGHBOUR_RETAIN`` training captions (canonical noun first, then the synonyms), against
``retain_per_class`` canonical captions for the other classes. An erasure moves the text states nearest to the
target most, so the classes the model confuses with it need the most preservation. Measured on ``fashion``,
coat -> dress, the check at up to 800 images per set (training seed 0): 8 canonical captions cost shirt
+1.5 points [+0.9, +2.2] (not decided); 16 captions +0.5 [-0.1, +1.1] with held-out 0.08 [0.06, 0.10]
(not decided); 48 captions +0.6 [-0.0, +1.2] with held-out 0.13 (FAIL), which the embedded model's
``lambda_pre`` 0.5 brings back to PASS at both training seeds (README, issue 25)."""


def neighbour_classes(target: str | int) -> list[int]:
    """Labels of the classes that share a confusion group (:data:`FOOTWEAR`, :data:`TOPS`) with ``target``,
    in label order, the target itself excluded. Raises SaceError for an unknown class."""
    t = fc.class_index(target)
    out = set()
    for group in (FOOTWEAR, TOPS):
        idx = [fc.class_index(k) for k in group]
        if t in idx:
            out.update(i for i in idx if i != t)
    return sorted(out)


def fashion_concept(target: str, anchor: str | None = None, retain_per_class: int = 8,
                    expand: int = 0, neighbour_retain: int | None = None, synonym_retain: int = 2,
                    anchor_synonyms: bool = True) -> ConceptSpec:
    """A Fashion-MNIST class as a concept for the embedded ``fashion`` model.

    targets: the class's 48 training captions (canonical noun and 5 synonyms x 8 templates), extended to
    ``expand`` prompts over the class's other concept words when ``expand`` > 48
    (:func:`~sace.concepts.grammar.expand_targets`); anchors: each target with its noun phrase replaced by
    the anchor class's canonical noun phrase ("a photo of a pair of trousers" -> "a photo of a dress"; default
    anchor: :data:`DEFAULT_ANCHORS`; an anchor that is no class is used as a phrase); retain:
    ``retain_per_class`` captions (template x canonical noun) plus each synonym in the first ``synonym_retain``
    templates, for every class but the target, except the anchor class (all its training captions that are no
    anchor prompt, i.e. its synonyms in every template) and the target's neighbours (:func:`neighbour_classes`),
    which get their first ``neighbour_retain`` (default :data:`NEIGHBOUR_RETAIN`) training captions, synonyms
    included; entangled: the targets' sentence frames without the noun phrase ("a photo"); heldout: the class's
    held-out paraphrases. ``anchor_synonyms=False`` gives the anchor class the retain prompts of any other class
    (screening: what its synonyms cost the attacks).

    Why the synonyms (measured on ``fashion`` with robust SACE, ``benchmarks/erase_every_class.py``): with the
    canonical noun alone, an adapter moved the synonyms it was never shown -- ankle_boot's anchor sneaker lost
    every "trainer" image to the tops (anchor accuracy 0.73, ACC_i drop +9.3 points at training seed 1), dress
    cost sandal and shirt +9.3 points. With them, same seed: ankle_boot -1.1 points (anchor 1.00), dress +3.0;
    all ten classes within the erasure thresholds at two training seeds, anchors >= 0.97 (README, issue 21).

    Raises:
        SaceError: unknown class, the anchor is the concept itself, or a negative retain count.
    """
    t = fc.class_index(target)
    if min(retain_per_class, synonym_retain, neighbour_retain or 0) < 0:
        raise SaceError(f"retain counts must be >= 0 (retain_per_class={retain_per_class}, "
                        f"synonym_retain={synonym_retain}, neighbour_retain={neighbour_retain})")
    try:
        a = fc.class_index(anchor if anchor else DEFAULT_ANCHORS[fc.class_key(t)])
        phrase, anchor_name = fc.canonical_name(a), fc.class_key(a)
    except SaceError:
        # not a class: a free anchor phrase ("a plain white box"); `sace audit` tells whether it is harmless
        a, phrase, anchor_name = None, anchor, anchor
    if a == t:
        raise SaceError(f"the anchor must differ from the concept ({fc.class_key(t)})")
    words = fc.concept_words(t)
    targets = fc.training_captions(t)
    if expand > len(targets):
        targets = expand_targets(targets, words, limit=expand)
    anchors = [replace_words(c, words, phrase) for c in targets]
    near = set(neighbour_classes(t))
    n_near = NEIGHBOUR_RETAIN if neighbour_retain is None else neighbour_retain
    retain = []
    for c in range(fc.NUM_CLASSES):
        if c == t:
            continue
        if c == a and anchor_synonyms:
            # the anchors name the anchor class by its canonical noun only; its synonyms had no protection,
            # and an adapter that sends the target to the anchor moved them (robust SACE, ankle_boot -> sneaker,
            # training seed 1: every "trainer" image became a top, anchor accuracy 0.73)
            retain += [x for x in fc.training_captions(c) if x not in anchors]
            continue
        if c in near and n_near > retain_per_class:
            retain += fc.training_captions(c)[:n_near]
        else:
            retain += [tpl.format(fc.canonical_name(c)) for tpl in fc.TRAINING_TEMPLATES[:retain_per_class]]
            # every synonym too, in the first `synonym_retain` sentence frames: with the canonical noun alone the
            # synonyms had no protection (robust SACE, training seed 1: dress lost sandals and shirts, +9.3 points)
            retain += [tpl.format(f"{det} {noun}") for det, noun in fc.synonyms(c)
                       for tpl in fc.TRAINING_TEMPLATES[:synonym_retain]]
    entangled = [e for e in (delete_words(c, words) for c in targets) if e.strip()]
    return ConceptSpec(fc.class_key(t), targets, anchors, retain, list(dict.fromkeys(entangled)),
                       fc.heldout_captions(t), words, anchor_name).validate()


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
    try:
        anchor = fc.class_index(concept.anchor_name) if concept.anchor_name else None
    except SaceError:       # a free anchor phrase
        anchor = None
    if anchor is not None and anchor not in near + erased:
        near.insert(0, anchor)
    return erased, near
