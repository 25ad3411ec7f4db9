"""Domains: the data, concept sets and detectors that belong to a family of embedded models, kept out of
the library core.

A model folder names its domain in ``model.json`` (``"domain": "fashion"``); the core asks this registry
for it (:func:`for_model`, :func:`get`) and never imports a domain module itself, so adding a domain is a
new folder under ``sace/domains/`` plus one entry in :data:`DOMAINS`. What a domain provides is written
down in :class:`Domain`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import SaceError

if TYPE_CHECKING:  # type names only: the core modules import this registry, not the other way round
    from torch import Tensor

    from ..erasure.concepts import ConceptSpec
    from ..evaluation.harness import EvalItem

__all__ = ["Domain", "DOMAINS", "names", "get", "name_of", "for_model"]

DOMAINS: dict[str, str] = {"fashion": "sace.domains.fashion"}
"""Domain name -> module exposing ``DOMAIN`` (imported on first use)."""


@runtime_checkable
class Domain(Protocol):
    """What the core asks of a domain (the embedded model's world: its classes, prompts and detector)."""

    name: str
    class_names: tuple[str, ...]
    """Class keys in the detector's output order (index = class label)."""

    def concepts(self) -> list[str]:
        """Names of the built-in concepts (e.g. the class keys)."""

    def concept(self, name: str, anchor: str | None = None) -> ConceptSpec:
        """A built-in concept; raises SaceError for an unknown name (listing the known ones)."""

    def class_index(self, name: str | int) -> int:
        """Class label of a concept name, key, official name or synonym; SaceError when unknown."""

    def detector(self) -> Any:
        """A concept detector with ``scores(images (B, 3, H, W) in [0, 1]) -> (B, C)`` over ``class_names``
        and ``features(images) -> (B, F)`` for feature-space KID."""

    def scorer(self, concept: str | None, prompt: str) -> tuple[Callable[[Tensor], Tensor], str]:
        """ISSA's score: ``(images -> (B,) probability of the concept, concept key)``; without ``concept``
        the class that ``prompt`` names."""

    def eval_items(self, concept: str, n_per_class: int, n_heldout: int, seed0: int = 0) -> list[EvalItem]:
        """The built-in evaluation set of an erased concept (every class plus held-out paraphrases)."""

    def real_images(self, n_per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Real test images ``(N, 3, H, W)`` in [0, 1] and labels ``(N,)`` for KID/FID."""

    def neighbours(self, concept: ConceptSpec) -> tuple[list[int], list[int]]:
        """``(erased, neighbours)`` class labels reported separately in the evaluation table."""


def names() -> list[str]:
    """Registered domain names."""
    return sorted(DOMAINS)


def get(name: str) -> Domain:
    """The domain called ``name``. Raises SaceError for an unknown name (listing the known ones)."""
    if name not in DOMAINS:
        raise SaceError(f"unknown domain {name!r}; known domains: {', '.join(names())}")
    return importlib.import_module(DOMAINS[name]).DOMAIN


def name_of(model: Any) -> str | None:
    """The domain named by a model's ``model.json`` (``model.spec.domain``), or None (e.g. Infinity-2B)."""
    return getattr(getattr(model, "spec", None), "domain", None)


def for_model(model: Any) -> Domain | None:
    """The domain of a loaded model, or None when its folder names none."""
    name = name_of(model)
    return get(name) if name else None

