"""The ``sace`` command line: bad invocations print one clear line and exit non-zero; help texts exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "sace.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("args, message", [
    (["generate", "--prompt", "a photo of a sneaker", "--model", "no-such-model"], "unknown model"),
    (["generate", "--prompt", "   "], "empty"),
    (["generate"], "no prompt given"),
    (["generate", "--prompt", "a sneaker", "--adapter", "/nonexistent/adapter"], "adapter folder not found"),
    (["erase", "--concept", "unicorn"], "unknown"),
    (["issa", "--prompt", "a sneaker"], "anchor"),
])
def test_bad_invocations_print_one_line(args, message, tmp_path):
    r = _run(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr


def test_help_texts_explain_every_command():
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("generate", "issa", "erase", "evaluate", "demo", "models", "train"):
        assert cmd in r.stdout
    for cmd in ("generate", "issa", "erase", "evaluate", "demo"):
        h = _run(cmd, "--help")
        assert h.returncode == 0 and "--out" in h.stdout, cmd
        assert cmd == "demo" or "--model" in h.stdout, cmd


def test_models_listing():
    r = _run("models")
    assert r.returncode == 0, r.stderr
    for name in ("fashion", "infinity-2b", "infinity-8b", "infinity-tiny-fixture"):
        assert name in r.stdout


def test_generate_writes_images_grid_and_one_index(tmp_path):
    import json

    from PIL import Image

    out = tmp_path / "gen"
    r = _run("generate", "--prompt", "a photo of a sneaker", "--n", "2", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["model"] == "fashion" and index["world_size"] == 1 and index["count"] == 2
    assert index["images"] == [{"index": 0, "prompt": "a photo of a sneaker", "seed": 3, "file": "00000_s3.png"},
                               {"index": 1, "prompt": "a photo of a sneaker", "seed": 4, "file": "00001_s4.png"}]
    assert index["settings"] == {"guidance": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 0.0}
    with Image.open(out / "grid.png") as im:
        assert im.size == (2 + 2 * (32 + 2), 2 + 32 + 2)   # one row of two 32x32 images, 2 px padding


def test_global_checkpoint_options_reach_the_model_loader(tmp_path):
    r = _run("--vae-path", str(tmp_path / "no-vae.safetensors"), "generate", "--prompt", "a dress",
             "--model", "infinity-tiny-fixture", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no-vae.safetensors" in r.stderr, r.stderr
