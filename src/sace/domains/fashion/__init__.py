"""The ``fashion`` domain: Fashion-MNIST data, captions, concept sets, classifier and scorer of the embedded
default model (its ``model.json`` says ``"domain": "fashion"``).

Modules: :mod:`.data` (IDX files, image conversions), :mod:`.classes` (class metadata, captions, concept
words), :mod:`.concepts` (classes as erasure concepts and evaluation sets), :mod:`.classifier` (the CNN
detector, inference only; training is the recipe :mod:`sace.recipes.fashion_classifier`). The core reaches
this package only through :func:`sace.domains.get` and the :data:`DOMAIN` object below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor

from ...errors import SaceError
from ...evaluation.detectors import ClassifierDetector
from . import classes
from .classifier import FashionClassifier, load_classifier
from .concepts import eval_items, fashion_concept, neighbours, real_images

__all__ = ["DOMAIN", "FashionDomain"]


class FashionDomain:
    """The :class:`sace.domains.Domain` of the embedded ``fashion`` model (10 Fashion-MNIST classes)."""

    name = "fashion"
    class_names: tuple[str, ...] = classes.CLASS_KEYS

    def concepts(self) -> list[str]:
        """The 10 class keys (tshirt, trouser, ..., ankle_boot)."""
        return list(classes.CLASS_KEYS)

    def class_index(self, name: str | int) -> int:
        """Label ``0..9`` of a key, official name, index or synonym; SaceError when unknown."""
        return classes.class_index(name)

    def concept(self, name: str, anchor: str | None = None):
        """:func:`~sace.domains.fashion.concepts.fashion_concept`, with a message listing the classes when
        ``name`` is unknown."""
        try:
            classes.class_index(name)
        except SaceError as e:
            raise SaceError(f"unknown concept {name!r} for the fashion model; known: "
                            f"{', '.join(classes.CLASS_KEYS)} (or give --target prompts)") from e
        return fashion_concept(name, anchor)

    @functools.cached_property
    def classifier(self) -> FashionClassifier:
        """The packaged classifier, loaded once per process (eval mode, CPU)."""
        return load_classifier()

    def detector(self) -> ClassifierDetector:
        """Class probabilities over :attr:`class_names` from the packaged classifier."""
        return ClassifierDetector(self.classifier, list(self.class_names), name="fashion-classifier")

    def feature_model(self) -> FashionClassifier:
        """The module whose ``features(images)`` gives classifier-feature KID."""
        return self.classifier

    def scorer(self, concept: str | None, prompt: str) -> tuple[Callable[[Tensor], Tensor], str]:
        """ISSA's score: classifier probability ``(B,)`` of the concept's class, and the class key.

        Raises:
            SaceError: no ``concept`` and ``prompt`` does not name exactly one class.
        """
        if concept is None:
            named = [i for i in range(classes.NUM_CLASSES) if classes.mentions_concept(prompt, i)]
            if len(named) != 1:
                raise SaceError(f"cannot tell which class {prompt!r} names; pass --concept "
                                f"({', '.join(classes.CLASS_KEYS)})")
            idx = named[0]
        else:
            idx = classes.class_index(concept)
        clf = self.classifier
        return (lambda imgs: clf.predict_proba(imgs)[:, idx]), classes.class_key(idx)

    eval_items = staticmethod(eval_items)
    real_images = staticmethod(real_images)
    neighbours = staticmethod(neighbours)


DOMAIN = FashionDomain()
