"""Fashion-MNIST loading and image conversions of the fashion domain (no network, < 20 s)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from sace.domains.fashion import data as fdata
from sace.errors import SaceError
from tests.helpers import needs_fashion_data


def _write_idx(path, magic: int, dims: list[int], payload: bytes, gz: bool = False) -> None:
    data = struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)

@needs_fashion_data
def test_train_split_shapes_counts_and_values():
    x, y = fdata.load_split("train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 6000))
    assert int(x.min()) == 0 and int(x.max()) == 255
    # known facts of the official files: the first training image is an ankle boot, the second a T-shirt
    assert y[:2].tolist() == [9, 0]

@needs_fashion_data
def test_test_split_is_separate_and_balanced():
    x, y = fdata.load_split("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 1000))
    xt, _ = fdata.load_split("train")
    assert not torch.equal(x[:100], xt[:100])
    # fresh copies: editing the result does not change the next load
    x[0] = 0
    assert not torch.equal(fdata.load_split("test")[0][0], x[0])

def test_unknown_split():
    with pytest.raises(SaceError, match="use 'train' or 'test'"):
        fdata.load_split("validation")

def test_missing_dir_names_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(fdata.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(SaceError) as e:
        fdata.load_split("train")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte.gz") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and fdata.ENV_VAR in msg
    assert "\n" not in msg

def test_root_argument_beats_env(tmp_path, monkeypatch):
    monkeypatch.setenv(fdata.ENV_VAR, "/definitely/not/here")
    assert fdata.dataset_dir(tmp_path) == tmp_path
    assert str(fdata.dataset_dir()) == "/definitely/not/here"
    monkeypatch.delenv(fdata.ENV_VAR)
    assert fdata.dataset_dir() == fdata.DEFAULT_DIR

def _fake_test_split(root, img_magic=2051, n_img=10000, img_payload=None, lbl_payload=None, gz=False):
    sfx = ".gz" if gz else ""
    img_payload = bytes(10000 * 28 * 28) if img_payload is None else img_payload
    lbl_payload = (np.arange(10000) % 10).astype(np.uint8).tobytes() if lbl_payload is None else lbl_payload
    _write_idx(root / f"t10k-images-idx3-ubyte{sfx}", img_magic, [n_img, 28, 28], img_payload, gz)
    _write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", 2049, [10000], lbl_payload, gz)

def test_valid_fake_files_load(tmp_path):
    _fake_test_split(tmp_path, gz=True)
    x, y = fdata.load_split("test", root=tmp_path)
    assert x.shape == (10000, 28, 28) and int(x.sum()) == 0
    assert y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

@pytest.mark.parametrize("kind, kwargs, pattern", [
    ("magic", {"img_magic": 2049}, "magic number 2049"),
    ("count", {"n_img": 9999}, r"header says shape \[9999, 28, 28\]"),
    ("truncated", {"img_payload": bytes(1000)}, "payload bytes"),
    ("label", {"lbl_payload": bytes([10] * 10000)}, "label 10 is not in 0..9"),
])
def test_corrupt_files_raise(tmp_path, kind, kwargs, pattern):
    _fake_test_split(tmp_path, **kwargs)
    with pytest.raises(SaceError, match=pattern):
        fdata.load_split("test", root=tmp_path)

def test_bad_gzip_raises(tmp_path):
    _fake_test_split(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SaceError, match="corrupt or truncated"):
        fdata.load_split("test", root=tmp_path)

def test_to_model_images_pads_centred_and_ranges():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
    x[0, 0, 0], x[0, 0, 1] = 0, 255
    out = fdata.to_model_images(x)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    centre = out[:, :, 2:30, 2:30]
    assert torch.allclose(centre, (x.float() / 127.5 - 1).unsqueeze(1).expand(-1, 3, -1, -1), atol=1e-6)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert bool((out[:, :, border] == -1).all())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    # round trip to the classifier's [0, 1] space
    unit = fdata.model_to_unit(out)
    assert torch.equal((unit[:, 0, 2:30, 2:30] * 255).round().to(torch.uint8), x)
    assert torch.equal(fdata.unit_images(x)[:, 1], x.float() / 255)

def test_to_model_images_other_inputs_and_errors():
    x = np.full((28, 28), 255, dtype=np.uint8)
    out = fdata.to_model_images(x, size=30)
    assert out.shape == (1, 3, 30, 30) and float(out[0, 0, 1, 1]) == 1.0 and float(out[0, 0, 0, 0]) == -1.0
    assert fdata.to_model_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape == (2, 3, 32, 32)
    with pytest.raises(SaceError, match="uint8"):
        fdata.to_model_images(torch.zeros(2, 28, 28))
    with pytest.raises(SaceError, match="size must be >= 28"):
        fdata.to_model_images(torch.zeros(2, 28, 28, dtype=torch.uint8), size=16)
    with pytest.raises(SaceError, match="grayscale"):
        fdata.to_model_images(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
