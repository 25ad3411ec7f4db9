"""The ``fashion`` domain: Fashion-MNIST data, captions, concept sets, classifier and scorer of the embedded
default model (its ``model.json`` says ``"domain": "fashion"``).

Modules: :mod:`.data` (IDX files, image conversions), :mod:`.classes` (class metadata, captions, concept
words), :mod:`.concepts` (classes as erasure concepts and evaluation sets), :mod:`.classifier` (the CNN
detector, inference only; training is the recipe :mod:`sace.recipes.fashion_classifier`). The core reaches
this package only through :func:`sace.domains.get` and the :data:`DOMAIN` object below.
"""

from __future__ import annotations

import functools

from ...concepts.detectors import ClassifierDetector
from ...concepts.items import EvalItem
from ...concepts.judge import Judge, NoDetector, class_judge
from ...concepts.spec import ConceptSpec
from ...errors import SaceError
from . import classes
from .classifier import FashionClassifier, load_classifier
from .concepts import eval_items, fashion_concept, neighbours, real_images

__all__ = ["DOMAIN", "FashionDomain"]


class FashionDomain:
    """The :class:`sace.domains.Domain` of the embedded ``fashion`` model (10 Fashion-MNIST classes)."""

    name = "fashion"
    own_detector = True
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

    def named_concept(self, prompt: str) -> str:
        """The class key ``prompt`` names (``"a photo of a dress"`` -> ``dress``).

        Raises:
            SaceError: the prompt names no class, or several.
        """
        named = [i for i in range(classes.NUM_CLASSES) if classes.mentions_concept(prompt, i)]
        if len(named) != 1:
            raise SaceError(f"cannot tell which class {prompt!r} names; pass --concept "
                            f"({', '.join(classes.CLASS_KEYS)})")
        return classes.class_key(named[0])

    def judge(self, concept: str | None, *, threshold: float = 0.6, device="cpu") -> Judge:
        """The classifier as the judge of ``concept``'s class (a merged ``sneaker+trouser``: any of its
        classes); without a concept it only classifies. ``threshold`` and ``device`` are unused (top-1 rule;
        the classifier stays on the CPU).

        Raises:
            NoDetector: ``concept`` is no class of the domain.
        """
        try:
            target = [classes.class_index(part) for part in concept.split("+")] if concept else []
        except SaceError as e:
            raise NoDetector(f"the fashion detector knows no class {concept!r}") from e
        name = "+".join(classes.class_key(t) for t in target)     # "running shoe" -> "sneaker"
        return class_judge(self.detector(), self.name, name, target, label_of=self._label_of)

    def _label_of(self, prompt: str) -> int | None:
        try:
            return classes.class_index(self.named_concept(prompt))
        except SaceError:            # the prompt names no class, or several
            return None

    def eval_items(self, concept: ConceptSpec, n_per_class: int = 50, n_heldout: int = 50,
                   seed0: int = 0) -> list[EvalItem]:
        """:func:`~sace.domains.fashion.concepts.eval_items` of the concept's class."""
        return eval_items(concept.name, n_per_class, n_heldout, seed0)

    def describe(self) -> list[dict]:
        """One row per class (name, prompt counts, detector) for listings."""
        rows = []
        for key in classes.CLASS_KEYS:
            c = fashion_concept(key)
            rows.append({"name": key, "targets": len(c.targets), "anchors": len(c.anchors), "retain": len(c.retain),
                         "heldout": len(c.heldout), "detector": self.name, "benchmark": "-",
                         "description": f"Fashion-MNIST class {classes.class_name(key)!r}"})
        return rows

    real_images = staticmethod(real_images)
    neighbours = staticmethod(neighbours)


DOMAIN = FashionDomain()
