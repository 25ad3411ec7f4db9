"""``sace export``: a mergeable adapter becomes official-layout weights with identical images, a scale-confined
one a gated folder with identical images, the card carries the recorded numbers, and bad input is one line with
nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sace.adapters import detach_adapters, load_adapter
from sace.errors import CheckpointError, SaceError
from sace.generate import generate
from sace.models.infinity.checkpoint import load_into, read_state_dict, transformer_key_map
from sace.models.registry import load_model
from sace.shipping.export import export_adapter

SEEDS = list(range(8))
PROMPTS = ["a photo of a sneaker"] * 8


def _images_with_adapter(model, folder):
    load_adapter(model, folder)
    try:
        return generate(model, PROMPTS, SEEDS)
    finally:
        detach_adapters(model)


def _run(*args, env=None, timeout=300):
    """The ``sace`` command in a fresh process (what a user runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sace", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _main(capsys, monkeypatch, *args):
    """The ``sace`` command in this process (its entry point, the same one-line error handling; no start-up
    cost): a CompletedProcess-like result."""
    from sace.cli import main

    monkeypatch.setattr(sys, "argv", ["sace", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, e.value.code, out.out, out.err)


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def merged(fashion, erased_adapter, attack_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "merged"
    res = export_adapter(erased_adapter, out, attack_dir=attack_dir)
    return res


def test_merged_export_gives_the_images_of_base_plus_adapter(fashion, erased_adapter, merged):
    assert merged.kind == "merged" and merged.reason is None
    assert merged.files == ["MODEL_CARD.md", "README.md", "model.json", "transformer.safetensors", "vae.safetensors"]
    ref = _images_with_adapter(fashion, erased_adapter)
    m = load_model(str(merged.out))
    assert m.name == "merged" and not m.transformer.adapter_set    # plain weights, no adapter attached
    got = generate(m, PROMPTS, SEEDS)
    assert (got - ref).abs().max().item() <= 1e-6                 # measured: 0.0 (identical pixels)
    # the adapter matters: the original model draws other images for the same seeds
    assert (generate(fashion, PROMPTS, SEEDS) - ref).abs().max().item() > 0.1
    meta = json.loads((merged.out / "model.json").read_text())
    assert meta["merged_from"]["base_model"] == "fashion" and meta["domain"] == "fashion"
    assert meta["hashes"]["vae"] == json.loads((erased_adapter / "adapter.json").read_text())["weights_hashes"]["vae"]


def test_merged_folder_loads_strictly_through_the_official_loader(fashion, merged):
    sd = dict(next(read_state_dict(merged.out / "transformer.safetensors")))
    # the reference's key layout: blocks under block_chunks.{c}.module.{j}, the VAE's plain names
    assert any(k.startswith("block_chunks.0.module.3.") for k in sd) and not any(k.startswith("blocks.") for k in sd)
    vae = dict(next(read_state_dict(merged.out / "vae.safetensors")))
    assert "encoder.conv_in.weight" in vae and "encoder.conv_in.conv.weight" not in vae
    cfg = fashion.transformer.cfg
    key_map = transformer_key_map(cfg.depth, cfg.block_chunks)
    fresh = type(fashion.transformer)(cfg)
    load_into(fresh, [sd], key_map)                                    # strict: every key, every shape
    dropped = sorted(sd)[5]
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_into(type(fashion.transformer)(cfg), [{k: v for k, v in sd.items() if k != dropped}], key_map)
    # the files as official checkpoints of the base model (--transformer-path/--vae-path): the same images
    with pytest.warns(UserWarning, match="--transformer-path given"):
        via_paths = load_model("fashion", transformer_path=str(merged.out / "transformer.safetensors"),
                               vae_path=str(merged.out / "vae.safetensors"))
    a = generate(via_paths, PROMPTS[:4], SEEDS[:4])
    b = generate(load_model(str(merged.out)), PROMPTS[:4], SEEDS[:4])
    assert torch.equal(a, b)


def test_gated_export_reloads_with_identical_images(fashion, gated_adapter, tmp_path):
    res = export_adapter(gated_adapter, tmp_path / "gated")
    assert res.kind == "gated" and "cannot be merged" in res.reason and "scale(s) 0 of 6" in res.reason
    assert res.files == ["MODEL_CARD.md", "README.md", "adapter/adapter.json", "adapter/adapter.safetensors",
                         "model.json"]
    meta = json.loads((res.out / "model.json").read_text())
    assert meta["format"] == "sace.gated-model.v1" and meta["base_model"] == "fashion" and meta["gate"] == "scale0"
    ref = _images_with_adapter(fashion, gated_adapter)
    m = load_model(str(res.out))
    assert m.name == "gated"
    assert torch.equal(generate(m, PROMPTS, SEEDS), ref)
    assert (generate(fashion, PROMPTS, SEEDS) - ref).abs().max().item() > 0.1
    card = (res.out / "MODEL_CARD.md").read_text()
    assert "cannot be merged" in card and meta["base_hashes"]["transformer"] in card
    # a gated folder whose base weights changed is refused
    meta["base_hashes"]["transformer"] = "0" * 16
    (res.out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(SaceError, match="exported for other 'fashion' weights"):
        load_model(str(res.out))


def test_the_card_renders_audit_check_and_attack_numbers(erased_adapter, merged, attack_dir):
    card = (merged.out / "MODEL_CARD.md").read_text()
    assert (merged.out / "README.md").read_text() == card
    head = card.split("---")[1]
    assert "base_model: fashion" in head and "license: mit" in head and "- erased-sneaker" in head
    meta = json.loads((erased_adapter / "adapter.json").read_text())
    audit, check = meta["audit"], meta["check"]
    for name, s in audit["sets"].items():
        assert f"| {name} | {s['n_prompts']} | {100 * s['rate']:.1f}% |" in card
    verdict = "PASS" if check["passed"] else "FAIL"
    assert f"Verdict: **{verdict}**" in card
    assert f"| ACC_e (targets flagged) | {100 * check['acc_e']:.1f}% | <= 5.0% |" in card
    assert f"| held-out ACC_e | {100 * check['heldout']:.1f}% |" in card
    rows = json.loads((attack_dir / "metrics.json").read_text())["concepts"]["sneaker"]
    mine = next(r for r in rows if r["target"] != "original")
    orig = next(r for r in rows if r["target"] == "original")
    assert len(merged.attack_rows) == 2
    assert f"| sneaker | concept-vector | this adapter | {100 * mine['asr']:.1f}% |" in card
    assert f"| sneaker | concept-vector | original model | {100 * orig['asr']:.1f}% |" in card
    assert "## Intended use" in card and "## Limitations" in card and "hf upload" in card


def test_bad_input_is_one_line_and_writes_nothing(erased_adapter, tmp_path, capsys, monkeypatch):
    # an existing folder without --force: untouched
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _one_line_error(_main(capsys, monkeypatch, "export", str(erased_adapter), "--out", str(out)), "already exists",
                    "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # an adapter of another base: another model (name), and other weights of the same-named model
    _one_line_error(_main(capsys, monkeypatch, "export", str(erased_adapter), "--out", str(tmp_path / "o1"),
                          "--model", "fashion-var"),
                    "trained on model 'fashion', not 'fashion-var'")
    other = tmp_path / "other-base"
    shutil.copytree(erased_adapter, other)
    meta = json.loads((other / "adapter.json").read_text())
    meta["weights_hashes"]["transformer"] = "0123456789abcdef"
    (other / "adapter.json").write_text(json.dumps(meta))
    _one_line_error(_main(capsys, monkeypatch, "export", str(other), "--out", str(tmp_path / "o2")),
                    "other 'fashion' transformer weights")
    # a hub id that is not in the (empty) cache, offline
    hf = tmp_path / "hf"
    line = _one_line_error(_run("export", "nobody/erased-thing", "--out", str(tmp_path / "o3"),
                                env={"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}),
                           "nobody/erased-thing", "not in the Hugging Face cache", "hf download nobody/erased-thing")
    assert "HF_HUB_OFFLINE=1" in line
    # nothing half-written: no output folders, no temporary folders left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "other-base", "taken"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["other-base", "taken"]


def test_a_var_adapter_over_every_scale_merges_too(tmp_path):
    from tests.helpers import random_adapter, save_detached

    m = load_model("fashion-var")
    ad = random_adapter(m, gate="shared", modules=["self_attn", "ffn", "adaln"], name="v", seed=1)
    folder = save_detached(ad, tmp_path / "var-adapter", m, extra={"concept": "sneaker"})
    res = export_adapter(folder, tmp_path / "var-merged")
    assert res.kind == "merged"
    sd = dict(next(read_state_dict(res.out / "transformer.safetensors")))
    assert set(sd) == set(m.transformer.state_dict())          # VAR's official names are sace's own
    classes, seeds = ["sneaker"] * 4, [0, 1, 2, 3]
    load_adapter(m, folder)
    try:
        ref = generate(m, classes, seeds)
    finally:
        detach_adapters(m)
    assert (generate(load_model(str(res.out)), classes, seeds) - ref).abs().max().item() <= 1e-6
    assert (generate(m, classes, seeds) - ref).abs().max().item() > 0.1
