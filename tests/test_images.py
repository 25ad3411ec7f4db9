"""The one PNG/grid implementation (``sace.images``): exact layouts, labels, atomic writes, conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sace import images
from sace.errors import SaceError
from sace.reporting import (
    save_grid,
)
from tests.helpers import files_under, png_size


def test_save_grid_plain_layout_is_exact(tmp_path):
    imgs = torch.zeros(5, 3, 8, 8)
    imgs[:, 0] = torch.linspace(0, 1, 5).view(5, 1, 1)  # image i: red = i/4
    imgs[4, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # one green pixel at the top-left of image 4
    p = save_grid(imgs, nrow=3, path=tmp_path / "g.png", upscale=4, pad=2)
    assert png_size(p) == (2 + 3 * (32 + 2), 2 + 2 * (32 + 2))
    arr = np.asarray(Image.open(p).convert("RGB"))
    assert tuple(arr[0, 0]) == (255, 255, 255)  # padding is white
    x0, y0 = 2 + 1 * 34, 2 + 1 * 34  # image 4: row 1, column 1
    assert (arr[y0:y0 + 4, x0:x0 + 4] == (0, 255, 0)).all()  # the green pixel became a 4x4 block
    assert tuple(arr[y0 + 10, x0 + 10]) == (255, 0, 0)
    assert tuple(arr[2 + 34 + 5, 2 + 2 * 34 + 5]) == (255, 255, 255)  # empty sixth cell stays white


def test_save_grid_with_labels_and_title(tmp_path):
    imgs = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    p = save_grid(imgs, 3, tmp_path / "g.png", row_labels=["before", "after erasure"],
                  col_labels=["a photo of a sneaker on a white background", "t-shirt", "bag"], title="Grid")
    w, h = png_size(p)
    assert w > 2 + 3 * 130 and h > 2 + 2 * 130  # room was made for the labels
    arr = np.asarray(Image.open(p).convert("L"))
    plain_w = 2 + 3 * 130
    left = w - plain_w
    assert arr[:, :left].min() < 100  # row labels drew dark text in the left margin
    assert arr[:h - (2 + 2 * 130), left:].min() < 100  # column labels / title above the tiles
    with pytest.raises(SaceError, match="row labels"):
        save_grid(imgs, 3, tmp_path / "bad.png", row_labels=["x"])
    with pytest.raises(SaceError, match="column labels"):
        save_grid(imgs, 3, tmp_path / "bad.png", col_labels=["x"])
    with pytest.raises(SaceError, match="shape"):
        save_grid(torch.rand(3, 32, 32), 3, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "g.png"
    save_grid(torch.zeros(1, 3, 4, 4), 1, target)
    before = target.read_bytes()
    real_save = Image.Image.save

    def broken_save(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(SaceError, match="disk full"):
        save_grid(torch.ones(1, 3, 4, 4), 1, target)
    assert target.read_bytes() == before
    assert files_under(tmp_path) == ["g.png"]


def test_tensor_to_pil_ranges():
    assert images.tensor_to_pil(torch.full((2, 2), 2.0)).getpixel((0, 0)) == (255, 255, 255)  # clamped
    assert images.tensor_to_pil(torch.full((3, 2, 2), 128, dtype=torch.uint8)).getpixel((1, 1)) == (128,) * 3
    assert images.tensor_to_pil(np.zeros((1, 3, 5))).size == (5, 3)
