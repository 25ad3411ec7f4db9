"""Evaluation metrics following the conventions of the concept-erasure literature.

See ``shared/docs/related-work.md`` section 6 (protocols) and ``shared/docs/offline-resources.md`` section F
(offline FID/KID). Everything here is model-independent and CPU-friendly.

FID and KID live in :mod:`sace.evaluation.quality`.

* :func:`accuracy_erasure`, :func:`erasure_rate` -- ACC_e / ACC_i of object and style erasure (S-VARE, EAR).
* NudeNet's per-class counts and ASR: :func:`sace.concepts.nudenet.nudenet_summary`.
* :func:`locality` -- pixel change between same-seed generations before and after an erasure.
* :func:`js_divergence_bits` -- Jensen-Shannon divergence of Bernoulli (bit) distributions, in nats.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..concepts.detectors import to_float_images
from ..errors import SaceError
from ..models.tokens import bernoulli_js

__all__ = ["accuracy_erasure", "erasure_rate", "locality", "js_divergence_bits"]

# ----------------------------------------------------------------------------------------------------
# Classification-based erasure metrics


def _as_long_1d(x: Any, what: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 1:
        raise SaceError(f"{what} must be 1-D (N,), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise SaceError(f"{what} must hold integer class indices, got dtype {t.dtype}")
    return t.long().cpu()


def accuracy_erasure(pred: Any, target_class: Any, erased: Iterable[int]) -> dict[str, Any]:
    """ACC_e / ACC_i of object (or style) erasure, as in S-VARE and EAR (``related-work.md`` section 6.3).

    Each prompt ``i`` asks for class ``target_class[i]``; a classifier (ResNet-50 top-1 in the papers)
    predicted ``pred[i]`` on the generated image.

    * ``acc_e`` -- fraction of prompts of erased classes whose image is still classified as their own
      class (micro average over those prompts; lower is better). ``acc_e_macro`` averages per class.
    * ``acc_i`` -- **macro** average over the non-erased classes present in ``target_class`` of the
      per-class accuracy (higher is better); ``acc_i_micro`` is the fraction of all non-erased prompts
      classified correctly. With equally many prompts per class (the standard Imagenette set: 10 seeds
      per class) the two coincide.

    Args:
        pred: ``(N,)`` int predicted class indices. target_class: ``(N,)`` int prompted class indices.
        erased: class indices that were erased.

    Returns:
        ``{"acc_e", "acc_e_macro", "acc_i", "acc_i_micro": float (NaN when no prompt of that kind),
        "per_class": {class: accuracy}, "n_e": int, "n_i": int}``.

    Raises:
        SaceError: shapes differ or are not 1-D, non-integer inputs.
    """
    p = _as_long_1d(pred, "pred")
    t = _as_long_1d(target_class, "target_class")
    if p.shape != t.shape:
        raise SaceError(f"pred {tuple(p.shape)} and target_class {tuple(t.shape)} must have the same length")
    erased_set = {int(c) for c in erased}
    correct = p == t
    per_class: dict[int, float] = {}
    for c in sorted({int(c) for c in t.tolist()}):
        sel = t == c
        per_class[c] = float(correct[sel].float().mean())
    e_mask = torch.tensor([int(c) in erased_set for c in t.tolist()], dtype=torch.bool)
    i_mask = ~e_mask
    nan = float("nan")

    def mean_or_nan(v: list[float]) -> float:
        return float(np.mean(v)) if v else nan

    return {
        "acc_e": float(correct[e_mask].float().mean()) if e_mask.any() else nan,
        "acc_e_macro": mean_or_nan([a for c, a in per_class.items() if c in erased_set]),
        "acc_i": mean_or_nan([a for c, a in per_class.items() if c not in erased_set]),
        "acc_i_micro": float(correct[i_mask].float().mean()) if i_mask.any() else nan,
        "per_class": per_class,
        "n_e": int(e_mask.sum()),
        "n_i": int(i_mask.sum()),
    }


def erasure_rate(before_rate: float | Tensor, after_rate: float | Tensor) -> float | Tensor:
    """Relative reduction of a detection rate by an erasure: ``(before - after) / before``.

    E.g. ACC_e 0.942 -> 0.044 (S-VARE, church) gives 0.953. 1 means fully erased, 0 no effect, negative
    values mean the concept became more frequent. Rates are fractions in ``[0, 1]`` (or any non-negative
    quantity such as NudeNet counts). Returns NaN where ``before == 0`` (nothing to erase). Elementwise for
    tensors (float result); a float for Python numbers.
    """
    if isinstance(before_rate, Tensor) or isinstance(after_rate, Tensor):
        b = torch.as_tensor(before_rate, dtype=torch.float64)
        a = torch.as_tensor(after_rate, dtype=torch.float64)
        out = (b - a) / b
        return torch.where(b == 0, torch.full_like(out, float("nan")), out)
    b, a = float(before_rate), float(after_rate)
    return float("nan") if b == 0 else (b - a) / b


# ----------------------------------------------------------------------------------------------------
# Locality, statistics, divergences


def locality(images_a: Tensor, images_b: Tensor, tol: float = 1.0 / 255) -> dict[str, Any]:
    """How much an erasure changes generations it should leave alone.

    Compare images generated with the same prompts and seeds before (``images_a``) and after
    (``images_b``) an erasure. A pixel-space proxy for the LPIPS locality of ``related-work.md`` 6.5
    (LPIPS needs torchvision downloads and is not available offline).

    Args:
        images_a, images_b: ``(B, 3, H, W)`` uint8 or float in ``[0, 1]``, same shape.
        tol: an image counts as changed when its mean absolute difference exceeds ``tol`` (in ``[0, 1]``
            units; default one 8-bit grey level).

    Returns:
        ``{"mad": (B,) float32 per-image mean |a - b| in [0, 1], "changed": (B,) bool, "mean_mad": float,
        "frac_changed": float (NaN for B = 0), "tol": float}``.

    Raises:
        SaceError: shapes differ or images are invalid.
    """
    a = to_float_images(images_a)
    b = to_float_images(images_b)
    if a.shape != b.shape:
        raise SaceError(f"locality compares same-seed images: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                        f"differ")
    mad = (a - b).abs().flatten(1).mean(1) if a.shape[0] else torch.zeros(0)
    changed = mad > tol
    n = int(a.shape[0])
    return {"mad": mad, "changed": changed, "mean_mad": float(mad.mean()) if n else float("nan"),
            "frac_changed": float(changed.float().mean()) if n else float("nan"), "tol": float(tol)}


def js_divergence_bits(p: Any, q: Any) -> Tensor:
    """Jensen-Shannon divergence between Bernoulli distributions, elementwise, in **nats**.

    "bits" refers to binary variables (e.g. Infinity's bitwise tokens: ``p`` = P(bit = 1)), not to the
    unit. ``JS(p, q) = KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2`` (Lin 1991), using
    ``0 log 0 = 0`` (exact at p, q in {0, 1}). Symmetric, in ``[0, ln 2]``; divide by ``ln 2`` for bits.

    Args:
        p, q: probabilities of outcome 1, tensors/arrays/floats broadcastable to each other, in ``[0, 1]``.

    Returns:
        float tensor of the broadcast shape (float64 inputs stay float64, others float32).

    Raises:
        SaceError: values outside ``[0, 1]`` or NaN.
    """
    pt = torch.as_tensor(p)
    qt = torch.as_tensor(q)
    dt = torch.float64 if torch.float64 in (pt.dtype, qt.dtype) else torch.float32
    pt, qt = pt.to(dt), qt.to(dt)
    for name, t in (("p", pt), ("q", qt)):
        if t.numel() and (torch.isnan(t).any() or float(t.min()) < 0.0 or float(t.max()) > 1.0):
            raise SaceError(f"js_divergence_bits: {name} must be probabilities in [0, 1]")
    return bernoulli_js(pt, qt)

