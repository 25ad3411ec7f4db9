"""The ImageNet detector (EfficientNet-Lite0, package-shipped weights) on real photos that packages ship."""

from __future__ import annotations

import pytest
import torch


def _photo(name: str) -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).contiguous()


def test_imagenet_detector_labels_real_photos():
    pytest.importorskip("skimage")
    from sace.concepts.imagenet import IMAGENETTE, imagenet_class_names, imagenet_detector

    names = imagenet_class_names()
    assert len(set(names)) == 1000 and all(names[i].lower() == k or k.replace(" ", "") in names[i].lower()
                                           or names[i].lower().startswith(k) for k, i in IMAGENETTE.items())
    det = imagenet_detector()
    # both photos cropped to one size so that they form a batch; the detector resizes to 224 px itself
    x = torch.stack([_photo("chelsea")[:, :300, :400], _photo("coffee")[:, 50:350, 100:500]])
    p = det.scores(x)
    assert p.shape == (2, 1000) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-4)
    top = p.argmax(-1).tolist()
    assert 281 <= top[0] <= 285, names[top[0]]          # ImageNet's five domestic-cat classes
    assert names[top[1]] == "espresso" and float(p[1, top[1]]) > 0.5
