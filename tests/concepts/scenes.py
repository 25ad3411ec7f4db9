"""Test images of a drawn outdoor scene, shared by the detector tests."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw


def _scene(seed: int, size: int = 256) -> torch.Tensor:
    """A PIL-drawn outdoor scene (sky gradient, grass, house, sun) with mild noise: (3, H, W) uint8."""
    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    for y in range(size // 2):
        c = int(120 + 100 * y / (size / 2))
        d.line([(0, y), (size, y)], fill=(c // 2, c // 2 + 40, 255))
    d.rectangle([0, size // 2, size, size], fill=(60, 140, 50))
    d.ellipse([size * 0.7, size * 0.08, size * 0.88, size * 0.26], fill=(255, 220, 60))
    d.rectangle([size * 0.2, size * 0.4, size * 0.5, size * 0.7], fill=(180, 60, 40))
    d.polygon([(size * 0.17, size * 0.4), (size * 0.35, size * 0.25), (size * 0.53, size * 0.4)],
              fill=(90, 40, 30))
    noise = np.random.default_rng(seed).normal(0, 6, (size, size, 3))
    a = np.clip(np.asarray(im, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()
