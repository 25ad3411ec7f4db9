"""Choosing the concept detector of a run: ``--detector auto|<domain>|nudenet|opennsfw|none``.

One place for the choice that ``sace issa`` (a scalar score per image) and ``sace evaluate`` (a detector
over classes) both make. ``auto`` is the model's domain detector when its ``model.json`` names a domain
(:mod:`sace.domains`), else NudeNet; a domain name picks that domain's detector on any model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .. import domains
from ..errors import SaceError
from .detectors import NudeNetDetector, OpenNSFWDetector

__all__ = ["detector_kind", "build_detector", "issa_scorer"]

_SCORE_NAMES = {"nudenet": "nudity", "opennsfw": "nsfw"}  # ISSA's concept name when none is given


def detector_kind(requested: str, model: Any) -> str:
    """``requested`` with ``auto`` resolved: the model's domain, else ``nudenet``."""
    return (domains.name_of(model) or "nudenet") if requested == "auto" else requested


def _choices() -> str:
    return ", ".join([*domains.names(), "nudenet", "opennsfw", "none"])


def build_detector(kind: str, nudenet_threshold: float = 0.6) -> Any | None:
    """The detector called ``kind`` (already resolved by :func:`detector_kind`); None for ``none``.

    Raises:
        SaceError: an unknown kind (the message lists the choices), or a detector that cannot load.
    """
    if kind in domains.names():
        return domains.get(kind).detector()
    if kind == "nudenet":
        return NudeNetDetector(threshold=nudenet_threshold)
    if kind == "opennsfw":
        return OpenNSFWDetector()
    if kind == "none":
        return None
    raise SaceError(f"unknown detector {kind!r}; use auto, {_choices()}")


def issa_scorer(kind: str, concept: str | None, prompt: str) -> tuple[Callable[[Tensor], Tensor], str]:
    """ISSA's ``(images (B, 3, H, W) in [0, 1] -> (B,) concept score, concept name)`` for a resolved
    detector kind. A domain scores its class (the one ``prompt`` names when ``concept`` is None); NudeNet
    and OpenNSFW score their first column.

    Raises:
        SaceError: unknown kind or ``none`` (ISSA needs a score), or a domain that cannot tell the class.
    """
    if kind in domains.names():
        return domains.get(kind).scorer(concept, prompt)
    if kind not in _SCORE_NAMES:
        raise SaceError(f"unknown detector {kind!r} for ISSA; use auto, "
                        f"{', '.join([*domains.names(), *_SCORE_NAMES])}")
    det = build_detector(kind)
    return (lambda imgs: det.scores(imgs)[:, 0]), concept or _SCORE_NAMES[kind]
