"""Fashion-MNIST loading, image conversions, class metadata and caption sets (no network, < 20 s)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from sace.errors import SaceError
from sace.recipes import fashion_data as fd


def _have_data() -> bool:
    try:
        fd.split_files("train")
        fd.split_files("test")
        return True
    except SaceError:
        return False


needs_data = pytest.mark.skipif(
    not _have_data(),
    reason=f"Fashion-MNIST not found in {fd.dataset_dir()} (sudo apt-get install dataset-fashion-mnist, "
           f"or set {fd.ENV_VAR})")


def _write_idx(path, magic: int, dims: list[int], payload: bytes, gz: bool = False) -> None:
    data = struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


# ---------------------------------------------------------------------------------------------- loading

@needs_data
def test_train_split_shapes_counts_and_values():
    x, y = fd.load_split("train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 6000))
    assert int(x.min()) == 0 and int(x.max()) == 255
    # known facts of the official files: the first training image is an ankle boot, the second a T-shirt
    assert y[:2].tolist() == [9, 0]


@needs_data
def test_test_split_is_separate_and_balanced():
    x, y = fd.load_split("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 1000))
    xt, _ = fd.load_split("train")
    assert not torch.equal(x[:100], xt[:100])
    # fresh copies: editing the result does not change the next load
    x[0] = 0
    assert not torch.equal(fd.load_split("test")[0][0], x[0])


def test_unknown_split():
    with pytest.raises(SaceError, match="use 'train' or 'test'"):
        fd.load_split("validation")


def test_missing_dir_names_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(fd.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(SaceError) as e:
        fd.load_split("train")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte.gz") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and fd.ENV_VAR in msg
    assert "\n" not in msg


def test_root_argument_beats_env(tmp_path, monkeypatch):
    monkeypatch.setenv(fd.ENV_VAR, "/definitely/not/here")
    assert fd.dataset_dir(tmp_path) == tmp_path
    assert str(fd.dataset_dir()) == "/definitely/not/here"
    monkeypatch.delenv(fd.ENV_VAR)
    assert fd.dataset_dir() == fd.DEFAULT_DIR


def _fake_test_split(root, img_magic=2051, n_img=10000, img_payload=None, lbl_payload=None, gz=False):
    sfx = ".gz" if gz else ""
    img_payload = bytes(10000 * 28 * 28) if img_payload is None else img_payload
    lbl_payload = (np.arange(10000) % 10).astype(np.uint8).tobytes() if lbl_payload is None else lbl_payload
    _write_idx(root / f"t10k-images-idx3-ubyte{sfx}", img_magic, [n_img, 28, 28], img_payload, gz)
    _write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", 2049, [10000], lbl_payload, gz)


def test_valid_fake_files_load(tmp_path):
    _fake_test_split(tmp_path, gz=True)
    x, y = fd.load_split("test", root=tmp_path)
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
        fd.load_split("test", root=tmp_path)


def test_bad_gzip_raises(tmp_path):
    _fake_test_split(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SaceError, match="corrupt or truncated"):
        fd.load_split("test", root=tmp_path)


# ---------------------------------------------------------------------------------------------- images

def test_to_model_images_pads_centred_and_ranges():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 28, 28), generator=g, dtype=torch.int64).to(torch.uint8)
    x[0, 0, 0], x[0, 0, 1] = 0, 255
    out = fd.to_model_images(x)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    centre = out[:, :, 2:30, 2:30]
    assert torch.allclose(centre, (x.float() / 127.5 - 1).unsqueeze(1).expand(-1, 3, -1, -1), atol=1e-6)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert bool((out[:, :, border] == -1).all())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    # round trip to the classifier's [0, 1] space
    unit = fd.model_to_unit(out)
    assert torch.equal((unit[:, 0, 2:30, 2:30] * 255).round().to(torch.uint8), x)
    assert torch.equal(fd.unit_images(x)[:, 1], x.float() / 255)


def test_to_model_images_other_inputs_and_errors():
    x = np.full((28, 28), 255, dtype=np.uint8)
    out = fd.to_model_images(x, size=30)
    assert out.shape == (1, 3, 30, 30) and float(out[0, 0, 1, 1]) == 1.0 and float(out[0, 0, 0, 0]) == -1.0
    assert fd.to_model_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape == (2, 3, 32, 32)
    with pytest.raises(SaceError, match="uint8"):
        fd.to_model_images(torch.zeros(2, 28, 28))
    with pytest.raises(SaceError, match="size must be >= 28"):
        fd.to_model_images(torch.zeros(2, 28, 28, dtype=torch.uint8), size=16)
    with pytest.raises(SaceError, match="grayscale"):
        fd.to_model_images(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------- classes

def test_class_metadata_order():
    assert fd.CLASS_NAMES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                              "Sneaker", "Bag", "Ankle boot")
    assert fd.CLASS_KEYS == ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                             "bag", "ankle_boot")


@pytest.mark.parametrize("concept, idx", [
    ("sneaker", 7), ("Sneaker", 7), ("running shoe", 7), ("Trainers", 7), ("ankle_boot", 9),
    ("Ankle boot", 9), ("ankle boot", 9), ("T-shirt/top", 0), ("t-shirt", 0), ("flip-flop", 5),
    ("jeans", 1), (3, 3), ("8", 8),
])
def test_class_index(concept, idx):
    assert fd.class_index(concept) == idx


def test_unknown_concept_lists_valid_keys():
    with pytest.raises(SaceError) as e:
        fd.class_index("hat")
    assert "'hat'" in str(e.value) and ", ".join(fd.CLASS_KEYS) in str(e.value)
    with pytest.raises(SaceError, match="out of range"):
        fd.class_index(10)
    with pytest.raises(SaceError):
        fd.training_captions("umbrella")


def test_canonical_prompts():
    assert fd.canonical_prompt("sneaker") == "a photo of a sneaker"
    assert fd.canonical_prompt("sandal") == "a photo of a sandal"
    assert fd.canonical_prompt("ankle_boot") == "a photo of an ankle boot"
    assert fd.canonical_prompt("trouser") == "a photo of a pair of trousers"
    assert fd.canonical_prompt(0) == "a photo of a t-shirt"
    for i in range(10):
        assert fd.training_captions(i)[0] == fd.canonical_prompt(i)


def test_caption_sets_counts_and_disjointness():
    train_all = [c for c, _ in fd.all_training_captions()]
    held_all = [c for c, _ in fd.all_heldout_captions()]
    assert len(train_all) == len(set(train_all)) == 480
    assert len(held_all) == len(set(held_all)) == 97
    assert not set(train_all) & set(held_all)
    for i in range(10):
        tr, ho = fd.training_captions(i), fd.heldout_captions(i)
        assert len(tr) >= 20 and len(ho) >= 8
        assert fd.canonical_prompt(i) in tr
        assert not set(tr) & set(ho)
    # held-out captions use sentence shapes that no training template produces
    prefixes = [t.split("{}")[0] for t in fd.TRAINING_TEMPLATES if t.split("{}")[0]]
    assert not any(h.startswith(p) for h in held_all for p in prefixes)
    assert "running shoes on a white background" in fd.heldout_captions("sneaker")
    assert "an image of an ankle boot" in fd.training_captions("ankle boot")
    assert "a flip-flop" in fd.training_captions("sandal")


def test_concept_words_cover_own_class_only():
    for cap, i in fd.all_training_captions() + fd.all_heldout_captions():
        for j in range(10):
            assert fd.mentions_concept(cap, j) == (i == j), (cap, i, j)
    words = fd.concept_words("sneaker")
    assert {"sneaker", "sneakers", "running shoe", "running shoes", "trainers"} <= set(words)
    assert [len(w) for w in words] == sorted((len(w) for w in words), reverse=True)
    assert not fd.mentions_concept("a photo of a t-shirt", "shirt")
    assert fd.mentions_concept("A Photo Of A SHIRT", "shirt")


def test_remove_concept_words():
    assert fd.remove_concept_words("a photo of a sneaker", "sneaker") == "a photo of a"
    cap = "running shoes on a white background"
    assert fd.remove_concept_words(cap, "sneaker") == "on a white background"
    assert fd.remove_concept_words("a t-shirt and a shirt, folded", "shirt") == "a t-shirt and a, folded"
    assert fd.remove_concept_words("a photo of a bag", "sneaker") == "a photo of a bag"
    for cap in fd.training_captions("ankle_boot") + fd.heldout_captions("ankle_boot"):
        assert not fd.mentions_concept(fd.remove_concept_words(cap, "ankle_boot"), "ankle_boot")
