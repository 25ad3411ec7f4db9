"""Helpers shared by the test modules (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sace.adapters import detach_adapters, save_adapter
from sace.domains.fashion import data as fashion_data
from sace.errors import SaceError
from sace.reporting import DPI

TESTS = Path(__file__).resolve().parent
SHARED_DIR = TESTS.parent.parent / "shared"
"""``../shared`` beside the clone (reference fixtures, prompt CSVs); tests that need it skip without it."""


def have_fashion_data() -> bool:
    """True when both Fashion-MNIST splits are installed (Debian ``dataset-fashion-mnist``)."""
    try:
        fashion_data.split_files("train")
        fashion_data.split_files("test")
        return True
    except SaceError:
        return False


needs_fashion_data = pytest.mark.skipif(
    not have_fashion_data(),
    reason=f"Fashion-MNIST not found in {fashion_data.dataset_dir()} (sudo apt-get install "
           f"dataset-fashion-mnist, or set {fashion_data.ENV_VAR})")


TABLE_ROWS = [   # a float, a NaN, a None, a 0-d tensor and characters that need escaping
    {"method": "SACE", "ACC_e": 0.05, "FID": 12.3456, "n": 5},
    {"method": "ESD", "ACC_e": float("nan"), "FID": 10.1, "n": None},
    {"method": "a|b <x>", "ACC_e": torch.tensor(0.2), "FID": None},
]


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking that it is a complete, valid PNG."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        size = im.size
    with Image.open(path) as im:
        im.verify()
    return size


def figure_px(figsize, dpi=DPI) -> tuple[int, int]:
    """The pixel size matplotlib gives a figure of ``figsize`` inches at ``dpi``."""
    return round(figsize[0] * dpi), round(figsize[1] * dpi)


def files_under(tmp_path):
    """Every entry of tmp_path (recursively): atomic writes must leave no temporary files."""
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the body with ``n`` torch intra-op threads; the previous count comes back afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def save_detached(adapter, folder, model, *, record_model: bool = True, extra: dict | None = None):
    """Save ``adapter`` into ``folder`` (``model`` recorded as its base unless ``record_model=False``) and detach
    every adapter from ``model``, so that a test can load the files onto a clean model; returns ``folder``."""
    save_adapter(adapter, folder, model=model if record_model else None, extra=extra)
    detach_adapters(model)
    return folder


def text_condition(n_prompts=2, seed=0, length=5):
    """A random text condition (n_prompts, length, 256) with a full mask, seeded."""
    from sace.models.base import Condition

    g = torch.Generator().manual_seed(seed)
    return Condition(torch.randn(n_prompts, length, 256, generator=g), torch.ones(n_prompts, length, dtype=torch.bool))


def random_adapter(model, isolation="strict", seed=0, gate="scale0", modules=None, name=None):
    """Attach an adapter with random (non-zero) weights, so that it changes the logits."""
    from sace.adapters import AdapterConfig, attach_adapter

    ad = attach_adapter(model, AdapterConfig(name=name or f"t_{isolation}_{gate}", gate=gate, isolation=isolation,
                                             modules=modules or ["cross_attn_q", "cross_attn_kv", "cross_attn_out",
                                                                 "ffn", "text_pool"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ad.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return ad


def drawn_scene(seed: int, size: int = 256) -> torch.Tensor:
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


class MeanColourClassifier(torch.nn.Module):
    """3 classes: which RGB channel has the largest mean (softmax of 20 * channel means)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def predict_proba(self, images):
        return (images.mean((2, 3)) * self.scale).softmax(-1)


def solid_image(rgb) -> torch.Tensor:
    """A (1, 3, 4, 4) float image of one colour (``rgb`` in [0, 1])."""
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 4)


# -- running the CLI in-process (the fault batteries, tests/cli/test_faults*.py) ------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``sace ARGS`` in this process -> (exit status, stdout, stderr)."""
    from sace import cli

    old = sys.argv
    sys.argv = ["sace", *[str(a) for a in args]]
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def last_error(err: str) -> str:
    lines = [x.split("\r")[-1] for x in err.strip().splitlines() if x.strip()]
    lines = [x for x in lines if x.startswith(("error: ", "interrupted: "))] or lines
    return lines[-1] if lines else ""


def assert_error(code: int, err: str, message: str, status: int = 2) -> None:
    assert code == status, (code, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    prefix = "error: " if status == 2 else "interrupted: "
    # exactly one such line (progress bars may redraw around it on stderr)
    found = [x.split("\r")[-1] for x in err.splitlines() if x.split("\r")[-1].startswith(prefix)]
    assert len(found) == 1, err[-2000:]
    assert message.lower() in found[0].lower(), found[0]
