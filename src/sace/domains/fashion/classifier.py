"""A small CNN concept classifier for the 10 Fashion-MNIST classes (the ``fashion`` default model).

Input convention (every public method): ``images`` float ``(B, 3, H, W)`` (``(B, 1, H, W)`` is accepted too)
in ``[0, 1]``, 0 = black background, at any size. The classifier converts to grayscale (mean of the
channels), resizes to 28x28 (bilinear with antialias; skipped when already 28x28; non-square inputs are
stretched), normalises with the Fashion-MNIST train mean/std and runs the CNN.

Two input forms of the same item must agree, and the packaged weights are checked on both:

* "raw 28": a real test image ``uint8 (28, 28)`` divided by 255
  (:func:`sace.domains.fashion.data.unit_images`);
* "padded 32": the generator's form, the item with 2 px of black on every side at 32x32
  (:func:`~sace.domains.fashion.data.to_model_images` then :func:`~sace.domains.fashion.data.model_to_unit`),
  which the classifier shrinks back to 28x28 (the item then covers the centre 24.5 px).

Training uses random black borders (0-3 px, then resized back to 28) and +-1 px shifts so that both forms
are classified well (no flips: the generator learns the dataset's fixed orientation). Packaged weights:
``sace/assets/fashion/classifier.safetensors`` with a ``classifier.json`` report next to it; rebuild them
with :func:`sace.recipes.fashion_classifier.train_classifier`
(training is a recipe; this module is inference only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor

from ...errors import CheckpointError, SaceError

__all__ = ["FashionClassifier", "load_classifier", "DEFAULT_CLASSIFIER_PATH", "ASSET_DIR", "RETRAIN_HINT"]

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "fashion"
DEFAULT_CLASSIFIER_PATH = ASSET_DIR / "classifier.safetensors"
RETRAIN_HINT = ("`python -c \"from sace.recipes.fashion_classifier import train_classifier; "
                "train_classifier()\"`")
FORMAT = "sace.fashion_classifier.v1"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train-set pixel mean / std in [0, 1]
SIZE = 28


class FashionClassifier(nn.Module):
    """Small CNN: 3 conv blocks (5x5 then 3x3 convs, BatchNorm, ReLU, 2x2 max-pool) -> 128-d embedding ->
    dropout -> 10 logits. About 189k parameters (0.76 MB in float32).

    Args:
        widths: channels of the three conv blocks.
        hidden: size of the penultimate embedding returned by :meth:`features`.
        dropout: dropout before the last linear layer (training only).
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64), hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        c1, c2, c3 = (int(w) for w in widths)
        self.config = {"widths": [c1, c2, c3], "hidden": int(hidden), "dropout": float(dropout)}

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(1, c1, 5), nn.MaxPool2d(2),                  # 28 -> 14
            *block(c1, c2, 3), nn.MaxPool2d(2),                 # 14 -> 7
            *block(c2, c3, 3), nn.MaxPool2d(2, ceil_mode=True),  # 7 -> 4
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(c3 * 16, hidden), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 10)

    @property
    def feature_dim(self) -> int:
        """F, the size of :meth:`features` (128 by default)."""
        return int(self.config["hidden"])

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``(B, C, H, W)`` float in ``[0, 1]`` (C = 1 or 3, any H, W) -> normalised ``(B, 1, 28, 28)``
        float32.

        Raises:
            SaceError: wrong rank, channel count or a non-floating dtype (uint8 must be divided by 255 first).
        """
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise SaceError(f"the Fashion classifier expects images (B, 3, H, W) or (B, 1, H, W), "
                            f"got {shape}")
        if not images.is_floating_point():
            raise SaceError(f"the Fashion classifier expects float images in [0, 1], got dtype "
                            f"{images.dtype} (divide uint8 pixels by 255)")
        x = images.float().mean(1, keepdim=True)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (x - MEAN) / STD

    def _embed(self, images: Tensor) -> Tensor:
        p = next(self.parameters())
        return self.embed(self.body(self.preprocess(images.to(p.device))))

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, 10)`` float32 (differentiable) for images ``(B, 3, H, W)`` in ``[0, 1]``."""
        return self.head(self.drop(self._embed(images)))

    @torch.no_grad()
    def _batched(self, images: Tensor, fn, batch_size: int) -> Tensor:
        if images.shape[0] == 0:
            self.preprocess(images)  # validates the shape
        outs = [fn(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def predict_proba(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Class probabilities ``(B, 10)`` float32 (rows sum to 1), without gradients, in chunks of
        ``batch_size``. Uses the module's current mode: call ``.eval()`` first (``load_classifier`` does)."""
        return self._batched(images, lambda x: self(x).softmax(-1), batch_size)

    def predict(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Predicted class indices ``(B,)`` int64 in ``0..9`` (order of ``classes.CLASS_NAMES``)."""
        return self._batched(images, lambda x: self(x).argmax(-1), batch_size).long()

    def features(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Penultimate embedding ``(B, F)`` float32 (``F = 128``, post-ReLU so >= 0), without gradients; used
        for classifier-feature KID/FID."""
        return self._batched(images, self._embed, batch_size)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------

def _config_from_metadata(meta: dict | None, path: Path) -> dict:
    if not meta or "config" not in meta:
        return {}
    try:
        cfg = json.loads(meta["config"])
        return {"widths": tuple(int(w) for w in cfg["widths"]), "hidden": int(cfg["hidden"]),
                "dropout": float(cfg["dropout"])}
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"classifier file {path} has an unreadable 'config' metadata entry "
                              f"({e})") from e


def load_classifier(path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> FashionClassifier:
    """Load a :class:`FashionClassifier` in eval mode.

    Args:
        path: a ``.safetensors`` file or a directory holding ``classifier.safetensors``; default: the
            packaged asset :data:`DEFAULT_CLASSIFIER_PATH`. Only ``safetensors`` is used (no pickle).
        device: where to put the weights.
    Raises:
        SaceError: the file does not exist (the message says how to build it).
        CheckpointError: not a valid safetensors file, missing or unexpected keys (listed), wrong shapes.
    """
    p = Path(path) if path is not None else DEFAULT_CLASSIFIER_PATH
    if p.is_dir():
        p = p / "classifier.safetensors"
    if not p.is_file():
        raise SaceError(f"Fashion classifier weights not found: {p}; build them with {RETRAIN_HINT} "
                        "(about 5 minutes on a CPU)")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for corrupt headers/payloads
        raise CheckpointError(f"cannot read classifier file {p}: not a valid safetensors file ({e})") from e
    model = FashionClassifier(**_config_from_metadata(meta, p))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"classifier file {p} does not match FashionClassifier: missing keys "
                              f"{missing}, unexpected keys {unexpected}")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"classifier file {p} has wrong shapes: {'; '.join(bad)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
