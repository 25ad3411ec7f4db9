"""``--adapter`` / ``--model`` take Hugging Face repo ids, read from the hub cache like a local folder. The cache
is a temporary one, filled with the snapshot layout of folders built here (no network)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sace.errors import SaceError
from sace.generate import generate
from sace.images import load_png
from sace.models.registry import load_model
from sace.shipping.export import export_adapter
from sace.shipping.hub import at_revision, is_repo_id, resolve_folder, split_revision


def put_in_cache(cache: Path, repo: str, folder: Path, ref: str = "main") -> str:
    """Write ``folder`` into the hub cache ``cache`` as a snapshot of ``repo`` at ``ref`` (the layout
    ``snapshot_download`` writes: ``models--ORG--NAME/refs/REF`` holds the commit, ``snapshots/COMMIT/`` the
    files); returns the commit hash."""
    commit = hashlib.sha1(f"{repo}{folder}".encode()).hexdigest()
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    shutil.copytree(folder, root / "snapshots" / commit)
    return commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache for this process and its children."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_repo_ids_and_paths_are_told_apart(tmp_path):
    assert is_repo_id("user/repo") and is_repo_id("user/repo@v1.0") and is_repo_id("FoundationVision/Infinity")
    assert not is_repo_id("/abs/path") and not is_repo_id("./rel/path") and not is_repo_id("a/b/c")
    assert not is_repo_id("fashion") and not is_repo_id(str(tmp_path))
    assert split_revision("user/repo@abc123") == ("user/repo", "abc123")
    assert split_revision("user/repo", "v2") == ("user/repo", "v2")
    with pytest.raises(SaceError, match="names revision a but --revision says b"):
        split_revision("user/repo@a", "b")
    assert at_revision("user/repo", "v2") == "user/repo@v2" and at_revision("user/repo@v1", "v2") == "user/repo@v1"
    assert at_revision("fashion", "v2") == "fashion" and at_revision("/abs/dir", "v2") == "/abs/dir"


def test_an_adapter_from_the_cache_gives_the_local_folders_images(erased_adapter, hub_cache, tmp_path):
    commit = put_in_cache(hub_cache, "sace-test/erase-sneaker", erased_adapter)
    assert resolve_folder("sace-test/erase-sneaker") == hub_cache / "models--sace-test--erase-sneaker" / \
        "snapshots" / commit
    assert resolve_folder(f"sace-test/erase-sneaker@{commit}") == resolve_folder("sace-test/erase-sneaker")
    # the command line end to end, offline: the adapter by repo id and by local folder draw the same images
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for key, ref in (("hub", f"sace-test/erase-sneaker@{commit}"), ("local", str(erased_adapter))):
        outs[key] = tmp_path / key
        r = subprocess.run([sys.executable, "-m", "sace", "generate", "--prompt", "a photo of a sneaker", "--n", "2",
                            "--adapter", ref, "--out", str(outs[key])], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    for name in ("00000_s0.png", "00001_s1.png"):
        assert torch.equal(load_png(outs["hub"] / name), load_png(outs["local"] / name))


def test_a_model_from_the_cache_is_verified_like_a_local_folder(fashion, gated_adapter, hub_cache, tmp_path):
    from sace.cli.common import model_location

    folder = export_adapter(gated_adapter, tmp_path / "exported").out
    put_in_cache(hub_cache, "sace-test/gated-model", folder)
    local = model_location("sace-test/gated-model")
    assert Path(local).parent.name == "snapshots"
    a = generate(load_model(local), ["a photo of a bag"] * 2, [0, 1])
    b = generate(load_model(str(folder)), ["a photo of a bag"] * 2, [0, 1])
    assert torch.equal(a, b)
    # verified like a local folder: a snapshot whose adapter file is damaged is refused
    broken = put_in_cache(hub_cache, "sace-test/broken", folder)
    (hub_cache / "models--sace-test--broken" / "snapshots" / broken / "adapter" / "adapter.safetensors").write_bytes(
        b"not a safetensors file")
    with pytest.raises(SaceError):
        load_model(model_location("sace-test/broken"))


def test_a_repo_that_is_not_in_the_cache_offline_is_one_line(hub_cache):
    with pytest.raises(SaceError) as e:
        resolve_folder("nobody/missing@v3", what="adapter")
    msg = str(e.value)
    assert "\n" not in msg and "adapter repo nobody/missing@v3 is not in the Hugging Face cache" in msg
    assert "hf download nobody/missing --revision v3" in msg and "HF_HUB_OFFLINE=1" in msg
