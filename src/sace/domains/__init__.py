"""Domains: the concepts, judges and evaluation sets that belong to a family of models, kept out of the
library core; and the one answer to "which concept?" and "which detector?" for every command.

A model folder names its domain in ``model.json`` (``"domain": "fashion"``); a model that names none (the
Infinity checkpoints, the tiny fixtures, VAR) belongs to the ``presets`` domain of the shipped concept presets.
The core asks this registry (:func:`for_model`, :func:`get`) and never imports a domain module itself, so adding
a domain is a new folder under ``sace/domains/`` plus one entry in :data:`DOMAINS`. What a domain provides is
written down in :class:`Domain`.

The two policies every command (``erase``, ``audit``, ``evaluate``, ``issa``, ``attack``, the demo) uses:

* :func:`resolve_concept` -- a concept file, ``--target`` prompts, or the domain's built-in concept;
* :func:`judge_for` -- ``--detector auto|<domain>|nudenet|opennsfw|imagenet|none``: ``auto`` asks the model's
  domain (fashion: its classifier on the concept's class; presets: the preset's ``detector`` field), with
  NudeNet for a nudity concept on any model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ..concepts.items import EvalItem
from ..concepts.judge import DETECTORS, NUDITY_NAMES, Judge, NoDetector, nudenet_judge, user_judge
from ..concepts.spec import ConceptSpec, check_words, from_prompts, load_concept_file, merge_concepts
from ..errors import SaceError
from ..models.text import check_prompts
from . import fashion, presets

__all__ = ["Domain", "DOMAINS", "PRESETS", "names", "get", "name_of", "for_model", "detector_choices",
           "resolve_concept", "default_anchor", "judge_for"]


@runtime_checkable
class Domain(Protocol):
    """What the core asks of a domain (a model family's world: its concepts, judge and evaluation set).

    A domain with ``own_detector`` (fashion: its classifier) also gives ``class_names``, ``class_index(name)``
    and, for ``sace evaluate``, ``real_images(n_per_class, seed) -> ((N, 3, H, W) in [0, 1], (N,) labels)``,
    ``feature_model()`` (``features(images) -> (B, F)`` for KID) and ``neighbours(concept) -> (erased,
    neighbours)`` class labels reported apart.
    """

    name: str
    own_detector: bool
    """Whether ``--detector NAME`` picks this domain's detector on any model."""

    def concepts(self) -> list[str]:
        """Names of the built-in concepts."""

    def concept(self, name: str, anchor: str | None = None) -> ConceptSpec:
        """A built-in concept; raises SaceError for an unknown name (listing the known ones)."""

    def named_concept(self, prompt: str) -> str:
        """The built-in concept ``prompt`` names; SaceError when it names none or several."""

    def judge(self, concept: str | None, *, threshold: float = 0.6, device: Any = "cpu") -> Judge:
        """The judge of a concept (a merged one joins names with ``+``); NoDetector with the reason when the
        domain has none for it."""

    def eval_items(self, concept: ConceptSpec, n_per_class: int, n_heldout: int, seed0: int = 0) -> list[EvalItem]:
        """The built-in evaluation set of an erased concept."""

    def describe(self) -> list[dict]:
        """One row per built-in concept (name, prompt counts, detector, benchmark, description)."""


PRESETS = "presets"
"""The domain of models whose ``model.json`` names none."""

DOMAINS: dict[str, Domain] = {"fashion": fashion.DOMAIN, PRESETS: presets.DOMAIN}
"""Domain name -> the domain object its package exposes as ``DOMAIN``."""


def names() -> list[str]:
    """Registered domain names."""
    return sorted(DOMAINS)


def get(name: str) -> Domain:
    """The domain called ``name``. Raises SaceError for an unknown name (listing the known ones)."""
    if name not in DOMAINS:
        raise SaceError(f"unknown domain {name!r}; known domains: {', '.join(names())}")
    return DOMAINS[name]


def name_of(model: Any) -> str | None:
    """The domain named by a model's ``model.json`` (``model.spec.domain``), or None (e.g. Infinity-2B)."""
    return getattr(getattr(model, "spec", None), "domain", None)


def for_model(model: Any) -> Domain:
    """The domain of a loaded model: the one its folder names, else :data:`PRESETS`."""
    return get(name_of(model) or PRESETS)


def detector_choices() -> list[str]:
    """What ``--detector`` accepts: ``auto``, the domains with a detector of their own, the named detectors
    (:data:`sace.concepts.judge.DETECTORS`) and ``none``."""
    return ["auto", *(n for n in names() if DOMAINS[n].own_detector), *DETECTORS, "none"]


def resolve_concept(model: Any, concept: str | Sequence[str] | None = None, *,
                    anchor: str | Sequence[str] | None = None, targets: Sequence[str] = (),
                    retain: Sequence[str] = (), concept_file: str | None = None) -> ConceptSpec:
    """The concept a command means on ``model``: a concept file, else ``--target`` prompts with an anchor
    phrase, else the built-in concept of the model's domain (a fashion class on ``fashion``, a shipped preset
    such as ``nudity`` on ``infinity-2b``); ``retain`` prompts are added to it.

    Several names (a list; ``--concept`` repeated) give one merged concept (:func:`merge_concepts`), each with
    the anchor at its position in ``anchor`` (a list) or its default anchor.

    Raises:
        SaceError: no concept named, unknown concept (the message lists the known ones), an anchor count that
            does not match, several names with ``--target`` prompts, a bad concept file; prompt sets that fail
            the static word checks (:func:`~sace.concepts.spec.check_words`: an anchor naming the concept, an
            anchor equal to its target, a retain prompt that is a target).
    """
    spec = _resolve(model, concept, anchor, targets, retain, concept_file)
    check_words(spec)
    return spec


def _resolve(model: Any, concept, anchor, targets: Sequence[str], retain: Sequence[str],
             concept_file: str | None) -> ConceptSpec:
    """:func:`resolve_concept` before its static checks."""
    if concept_file:
        return load_concept_file(concept_file)
    names_ = [concept] if isinstance(concept, str) else list(concept or [])
    anchors = [a for a in ([anchor] if isinstance(anchor, str) else list(anchor or [])) if a is not None]
    if anchors and len(anchors) != max(1, len(names_)):
        raise SaceError(f"{len(names_)} concept(s) but {len(anchors)} anchors; give one --anchor per --concept, "
                        f"in order, or none (default anchors)")
    if len(names_) > 1:
        if targets:
            raise SaceError("several --concept with --target prompts: put each concept in a concept file "
                            "(a JSON list) instead")
        anchors = anchors or [None] * len(names_)
        return merge_concepts([_resolve(model, n, a, (), retain, None) for n, a in zip(names_, anchors)])
    name = names_[0] if names_ else None
    anchor = anchors[0] if anchors else None
    if not name:
        raise SaceError("name the concept to erase (--concept NAME) or give --concept-file")
    if targets:
        return from_prompts(name, targets, anchor=anchor, retain=retain)
    spec = for_model(model).concept(name, anchor if anchor is not None else default_anchor(model, name))
    if retain:
        spec.retain = list(dict.fromkeys([*spec.retain, *check_prompts(list(retain))]))
    return spec


def default_anchor(model: Any, name: str) -> str | None:
    """The anchor ``model``'s own defaults give the built-in concept ``name``, or None (the domain's default).

    A model folder may name anchors per concept in ``model.json`` (``"defaults": {"anchors": {"pullover":
    "tshirt"}}``): a good anchor is a class *this* model draws reliably and does not confuse with the target,
    which differs between models of one domain (``fashion-var`` draws coats right only ~82% of the time, so
    coat is a poor anchor there). ``name`` may be any name the domain knows (``"running shoe"``).
    """
    table = (getattr(model, "method_defaults", None) or {}).get("anchors") or {}
    if not table:
        return None
    dom = for_model(model)
    if hasattr(dom, "class_index") and hasattr(dom, "class_names"):
        try:
            name = dom.class_names[dom.class_index(name)]
        except (SaceError, IndexError):
            return None
    return table.get(name)


def judge_for(model: Any, concept: ConceptSpec | str | None = None, detector: str | Callable = "auto", *,
              prompt: str | None = None, threshold: float = 0.6) -> Judge:
    """The judge of ``concept`` on ``model`` for ``--detector detector``: the same answer in every command.

    * ``auto``: a nudity concept (:data:`~sace.concepts.judge.NUDITY_NAMES`) -> NudeNet; otherwise the model's
      domain decides (fashion: its classifier on the concept's class; presets: the preset's ``detector``
      field, e.g. NudeNet for ``nudity``, the ImageNet classifier for ``church``);
    * a domain name (``fashion``): that domain's detector on any model;
    * ``nudenet``, ``opennsfw``, ``imagenet``: the named detector (:data:`~sace.concepts.judge.DETECTORS`);
    * a callable ``images -> scores in [0, 1]``: a user judge (flag: score >= 0.5).

    Args:
        concept: the concept (or its name); None: no concept (a class detector then only classifies).
        prompt: without a concept, the concept this prompt names (``sace issa``) decides.
        threshold: the score threshold of NudeNet detections (OpenNSFW: of P(nsfw)).
    Raises:
        NoDetector: ``none``, or no detector for the concept on this model (one line saying why).
        SaceError: an unknown detector name; a named detector that cannot judge the concept or load.
    """
    if callable(detector):
        return user_judge(detector)
    kind = (detector or "none").strip().lower()
    name = concept.name if isinstance(concept, ConceptSpec) else concept
    device = getattr(model, "device", "cpu")
    if kind == "none":
        raise NoDetector("detector 'none'")
    if kind == "auto":
        dom = for_model(model)
        name = name or (dom.named_concept(prompt) if prompt else None)
        if name and name.lower() in NUDITY_NAMES:
            return nudenet_judge(name, threshold=threshold)
        try:
            return dom.judge(name, threshold=threshold, device=device)
        except NoDetector as e:
            what = f"concept '{name}'" if name else "an unnamed concept"
            raise NoDetector(f"no detector for {what} on model '{getattr(model, 'name', '?')}': {e}") from None
    if kind in DOMAINS and DOMAINS[kind].own_detector:
        dom = get(kind)
        name = name or (dom.named_concept(prompt) if prompt else None)
        try:
            return dom.judge(name, threshold=threshold, device=device)
        except NoDetector as e:
            raise SaceError(f"{e}; use --detector none or a callable") from None
    if kind in DETECTORS:
        return DETECTORS[kind](name, threshold=threshold, device=device)
    raise SaceError(f"unknown detector {detector!r}; use {', '.join(detector_choices())}")
