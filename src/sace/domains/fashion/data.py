"""Fashion-MNIST files and image conversions for the ``fashion`` domain (the embedded default model).

Data
    :func:`load_split` reads the official IDX files as shipped by Debian's package
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``). The directory can be
    overridden with the ``root`` argument or the environment variable ``SACE_FASHION_MNIST_DIR``.
    The train split (60,000 images) and the test split (10,000 images) are never mixed.

Image conventions
    * Raw data: ``uint8`` ``(N, 28, 28)``, 0 = black background, 255 = white.
    * Generator space (:func:`to_model_images`): ``float32`` ``(N, 3, 32, 32)`` in ``[-1, 1]``; the 28x28
      item is centred with 2 px of black (``-1``) on every side and replicated to 3 channels.
    * Classifier space (:mod:`sace.domains.fashion.classifier`): ``float`` ``(N, 3, H, W)`` in
      ``[0, 1]``; :func:`model_to_unit` maps generator space there.

Class names and captions live in :mod:`sace.domains.fashion.classes`.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import SaceError
from .classes import NUM_CLASSES

__all__ = ["DEFAULT_DIR", "ENV_VAR", "SPLIT_SIZES", "dataset_dir", "split_files", "load_split",
           "to_model_images", "model_to_unit", "unit_images"]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SACE_FASHION_MNIST_DIR"
SPLIT_SIZES = {"train": 60000, "test": 10000}
_IMAGE_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_LABEL_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
_PREFIX = {"train": "train", "test": "t10k"}
_FIX = f"install it with `sudo apt-get install dataset-fashion-mnist` or set {ENV_VAR} to a directory " \
       "holding the four Fashion-MNIST IDX files"
_REFIX = f"reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist` or set {ENV_VAR} to " \
         "a directory with intact files"


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------

def dataset_dir(root: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST directory: ``root`` if given, else ``$SACE_FASHION_MNIST_DIR``, else
    :data:`DEFAULT_DIR`. The directory is not checked here (see :func:`split_files`)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else DEFAULT_DIR


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise SaceError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    return split


def split_files(split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths ``(images, labels)`` of a split, e.g. ``train-images-idx3-ubyte.gz``.

    The gzip name is preferred; an uncompressed file of the same name without ``.gz`` is accepted too.

    Raises:
        SaceError: unknown split, or a file is missing (the message names the path and the fix).
    """
    _check_split(split)
    d = dataset_dir(root)
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{_PREFIX[split]}-{kind}-ubyte"
        gz, raw = d / f"{name}.gz", d / name
        if gz.is_file():
            out.append(gz)
        elif raw.is_file():
            out.append(raw)
        else:
            raise SaceError(f"Fashion-MNIST file not found: {gz}; {_FIX}")
    return out[0], out[1]


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # BadGzipFile is an OSError, listed for clarity
        raise SaceError(f"cannot read Fashion-MNIST file {path} (corrupt or truncated: {e}); "
                        f"{_REFIX}") from e


def _parse_idx(path: Path, magic: int, expect_n: int) -> np.ndarray:
    """Parse an IDX file into uint8 ``(N,)`` (labels) or ``(N, 28, 28)`` (images), checking every field."""
    data = _read_bytes(path)
    ndim = 3 if magic == _IMAGE_MAGIC else 1
    header = 4 * (1 + ndim)  # 16 bytes for images, 8 for labels
    bad = f"corrupt Fashion-MNIST file {path}"
    if len(data) < header:
        raise SaceError(f"{bad}: only {len(data)} bytes, shorter than the {header}-byte IDX header; "
                        f"{_REFIX}")
    fields = np.frombuffer(data, dtype=">u4", count=1 + ndim).astype(np.int64)
    if int(fields[0]) != magic:
        raise SaceError(f"{bad}: magic number {int(fields[0])} (expected {magic}); {_REFIX}")
    dims = [int(x) for x in fields[1:]]
    if dims[0] != expect_n or (ndim == 3 and dims[1:] != [28, 28]):
        want = [expect_n, 28, 28][:ndim]
        raise SaceError(f"{bad}: header says shape {dims}, expected {want}; {_REFIX}")
    size = int(np.prod(dims))
    if len(data) != header + size:
        raise SaceError(f"{bad}: {len(data) - header} payload bytes, expected {size}; {_REFIX}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, img_path: str, lbl_path: str, mtimes: tuple) -> tuple[np.ndarray, np.ndarray]:
    n = SPLIT_SIZES[split]
    images = _parse_idx(Path(img_path), _IMAGE_MAGIC, n)
    labels = _parse_idx(Path(lbl_path), _LABEL_MAGIC, n)
    if int(labels.max()) >= NUM_CLASSES:
        raise SaceError(f"corrupt Fashion-MNIST file {lbl_path}: label {int(labels.max())} is not in 0..9; "
                        f"{_REFIX}")
    return images, labels


def load_split(split: str, root: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Load one Fashion-MNIST split.

    Args:
        split: ``"train"`` (60,000 images, 6,000 per class) or ``"test"`` (10,000, 1,000 per class).
        root: directory with the IDX files; default ``$SACE_FASHION_MNIST_DIR`` or :data:`DEFAULT_DIR`.
    Returns:
        ``(images, labels)``: ``uint8 (N, 28, 28)`` with 0 = black background and 255 = white, and
        ``int64 (N,)`` class indices in ``0..9`` in the official order (:data:`CLASS_NAMES`).
        The tensors are fresh copies (the parsed files are cached in memory only, nothing on disk).
    Raises:
        SaceError: unknown split, missing file (message names the path and the fix), or a corrupt file
            (bad gzip stream, wrong magic number, wrong counts or shape, truncated payload, label > 9).
    """
    img_path, lbl_path = split_files(split, root)
    mtimes = (img_path.stat().st_mtime_ns, lbl_path.stat().st_mtime_ns)
    images, labels = _load_cached(split, str(img_path.resolve()), str(lbl_path.resolve()), mtimes)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------------------------------------
# Image conversions
# --------------------------------------------------------------------------------------------------------

def _as_nhw(images: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise SaceError(f"expected grayscale images (N, H, W) or (N, 1, H, W), got shape {tuple(x.shape)}")
    return x


def to_model_images(images: Tensor | np.ndarray, size: int = 32) -> Tensor:
    """Raw Fashion-MNIST images -> the generator's input space.

    Every pixel ``p`` (uint8) becomes ``p / 127.5 - 1`` (0 -> -1 black, 255 -> +1 white); the image is padded
    with background ``-1`` to ``size x size``, centred (for 28 -> 32: exactly 2 px on each side, so
    ``out[:, :, 2:30, 2:30]`` is the input), and the gray channel is replicated to 3 identical RGB channels.
    Nothing is resized: ``size`` must be >= the input size; an odd margin puts the extra pixel at the
    bottom/right.

    Args:
        images: ``uint8`` ``(N, H, W)``, ``(N, 1, H, W)`` or ``(H, W)`` (torch or numpy), values 0..255.
        size: output side in pixels (default 32, the generator's resolution).
    Returns:
        ``float32`` ``(N, 3, size, size)`` in ``[-1, 1]``.
    Raises:
        SaceError: wrong rank, non-uint8 input, or ``size`` smaller than the images.
    """
    x = _as_nhw(images)
    if x.dtype != torch.uint8:
        raise SaceError(f"to_model_images expects uint8 pixels 0..255, got dtype {x.dtype}")
    h, w = int(x.shape[1]), int(x.shape[2])
    if size < max(h, w):
        raise SaceError(f"cannot pad {h}x{w} images to {size}x{size}; size must be >= {max(h, w)}")
    x = x.float().div_(127.5).sub_(1.0)
    top, left = (size - h) // 2, (size - w) // 2
    x = F.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def model_to_unit(images: Tensor) -> Tensor:
    """Generator space ``[-1, 1]`` -> classifier space ``[0, 1]``: ``(x + 1) / 2``, clamped.

    Shape and float dtype are kept (e.g. ``(N, 3, 32, 32)``)."""
    return images.float().add(1.0).mul_(0.5).clamp_(0.0, 1.0)


def unit_images(images: Tensor | np.ndarray) -> Tensor:
    """Raw ``uint8`` ``(N, 28, 28)`` -> ``float32`` ``(N, 3, 28, 28)`` in ``[0, 1]``.

    Pixels are divided by 255 and the gray channel is replicated to 3 channels: the "real data" input form
    of the concept classifier. Raises SaceError for a wrong rank or a non-uint8 input."""
    x = _as_nhw(images)
    if x.dtype != torch.uint8:
        raise SaceError(f"unit_images expects uint8 pixels 0..255, got dtype {x.dtype}")
    return x.float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
