"""Faults found by an outside tester (issue 24), table-driven: each row is a command, its exit status and a
substring of its one ``error: ...`` line; then the scenarios a row cannot express (a symlinked lock, two
concurrent ``sace attack`` runs, a rerun with other ``--sace-steps``, the README's ``sace attack --adapter``
on an adapter from ``sace erase``, a model differing only past the first 1024 elements of every tensor, bad
text-cache files, truncated PNGs, leftover temporary files).

Real models throughout (the embedded ``fashion`` model and the tiny Infinity fixture), every case cheap (one
training step, one image, one prompt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from sace.errors import SaceError

from ..helpers import assert_error, last_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
SEED_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model

    return load_model("fashion")


class _Evil:
    """A pickle payload: unpickling it would create the file (it must never run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def world(tmp_path_factory, fashion):
    """Paths the rows refer to as {NAME}."""
    from sace.adapters import AdapterConfig, attach_adapter, detach_adapters, save_adapter

    root = tmp_path_factory.mktemp("world24")
    w = {"T": root}
    (root / "file").write_text("not a folder")
    w["FILE"] = root / "file"
    (root / "empty.safetensors").write_bytes(b"")
    w["EMPTY_ST"] = root / "empty.safetensors"
    fixture = ROOT / "tests" / "fixtures" / "infinity_tiny" / "infinity_tiny_state_dict.safetensors"
    (root / "trunc.safetensors").write_bytes(fixture.read_bytes()[:5000])
    w["TRUNC_ST"] = root / "trunc.safetensors"
    w["MARKER"] = root / "pickle-ran"
    torch.save({"w": _Evil(w["MARKER"])}, root / "evil.pth")
    w["PICKLE"] = root / "evil.pth"
    (root / "latin1.json").write_bytes('{"name": "caf\xe9", "targets": ["a caf\xe9"]}'.encode("latin-1"))
    w["NOT_UTF8"] = root / "latin1.json"
    (root / "same.json").write_text(json.dumps({"name": "cat", "targets": ["a photo of a dog"],
                                                "anchors": ["a photo of a dog"]}))
    w["TARGET_IS_ANCHOR"] = root / "same.json"
    # adapters on fashion: a plain one, one with huge finite weights, one whose gate was edited afterwards
    ad = attach_adapter(fashion, AdapterConfig(name="fx", modules=["cross_attn_q"], rank=2), seed=0)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(0.01)
    save_adapter(ad, root / "adapter", model=fashion)
    with torch.no_grad():
        for p in ad.parameters():
            p.fill_(1e30)                       # finite, but the logits overflow
    save_adapter(ad, root / "huge", model=fashion)
    detach_adapters(fashion)
    w["AD_OK"], w["AD_HUGE"] = root / "adapter", root / "huge"
    shutil.copytree(root / "adapter", root / "gate_edited")
    meta = json.loads((root / "gate_edited" / "adapter.json").read_text())
    meta["config"]["gate"] = "shared"           # a valid gate, but not the one the weights were trained with
    (root / "gate_edited" / "adapter.json").write_text(json.dumps(meta))
    w["AD_GATE_EDITED"] = root / "gate_edited"
    other = json.loads((root / "adapter" / "adapter.json").read_text())
    other["weights_hashes"]["transformer"] = "0123456789abcdef"
    shutil.copytree(root / "adapter", root / "other_base")
    (root / "other_base" / "adapter.json").write_text(json.dumps(other))
    w["AD_BASE"] = root / "other_base"
    return w


G = ["generate", "--prompt", "a photo of a sneaker", "--n", "1"]
ER = ["erase", "--concept", "sneaker", "--steps", "1", "--no-audit", "--check-images", "0"]
AT = ["attack", "--concept", "sneaker", "--methods", "original", "--attacks", "vector", "--n-prompts", "1",
      "--eval-seeds", "1", "--search-seeds", "1", "--etas", "0", "--no-sanity"]
TINY = ["generate", "--model", "infinity-tiny-fixture", "--prompt", "x", "--n", "1"]

CASES = [
    # counts: a documented maximum (10000), checked before anything loads
    ("gen-n-1e12", G[:-2] + ["--n", "1000000000000"], 2, "--n must be an integer in [1, 10000]"),
    ("gen-images-per-prompt-alias", G[:-2] + ["--images-per-prompt", "10001"], 2, "--n must be an integer in"),
    ("issa-seeds-1e9", ["issa", "--prompt", "a sneaker", "--anchor-prompt", "a sandal", "--seeds", "1000000000"], 2,
     "--seeds must be an integer in [1, 10000]"),
    ("eval-n-per-class-1e9", ["evaluate", "--concept", "sneaker", "--n-per-class", "1000000000"], 2,
     "--n-per-class must be an integer in [1, 10000]"),
    ("attack-eval-seeds-1e9", AT + ["--eval-seeds", "1000000000"], 2, "--eval-seeds must be an integer in [1, 10000]"),
    ("attack-search-seeds-1e9", AT + ["--search-seeds", "1000000000"], 2, "--search-seeds must be an integer in"),
    ("erase-check-images-1e9", ER[:-2] + ["--check-images", "1000000000"], 2,
     "--check-images must be an integer in [0, 10000]"),
    ("audit-images-1e9", ["audit", "--concept", "sneaker", "--images", "1000000000"], 2,
     "--images must be an integer in [1, 10000]"),
    ("demo-n-per-class-0", ["demo", "--n-per-class", "0"], 2, "--n-per-class must be an integer in [1, 10000]"),
    ("erase-rank-1e6", ER + ["--rank", "1000000"], 2, "--rank 1000000 exceeds the width of the adapted layers"),
    # attack numbers
    ("attack-etas-nan", AT[:-3] + ["--etas", "nan,1", "--no-sanity"], 2, "--etas must be a finite number"),
    ("attack-seed-2^64-1", AT + ["--seed", str(SEED_MAX)], 2,
     "--seed + 1000 + --eval-seeds - 1 must be an integer in [0, 18446744073709551615]"),
    ("attack-seed-2^64", AT + ["--seed", str(2**64)], 2, "--seed must be an integer in [0, 18446744073709551615]"),
    # sace attack joins the output-folder rules: path checks before loading
    ("attack-out-is-file", AT + ["--out", "{FILE}"], 2, "is a file, not a folder"),
    ("attack-out-under-file", AT + ["--out", "{FILE}/sub"], 2, "is under the file"),
    ("attack-given-other-base", AT[:4] + ["original,sace", "--sace-steps", "1"] + AT[5:] + ["--adapter", "{AD_BASE}"],
     2, "trained on other 'fashion' transformer weights"),
    ("attack-second-concept-unknown", ["attack", "--concept", "sneaker,nosuch"] + AT[3:], 2,
     "unknown concept 'nosuch'"),
    ("attack-n-prompts-hint", AT[:7] + ["--n-prompts", "500"] + AT[9:], 2, "use --n-prompts"),
    # readers
    ("tpath-empty-safetensors", ["--transformer-path", "{EMPTY_ST}"] + TINY, 2, "is not a readable safetensors"),
    ("tpath-truncated-safetensors", ["--transformer-path", "{TRUNC_ST}"] + TINY, 2, "is not a readable safetensors"),
    ("tpath-pickle", ["--transformer-path", "{PICKLE}"] + TINY, 2, "holds pickled python objects"),
    ("concept-file-not-utf8", ["erase", "--concept-file", "{NOT_UTF8}", "--dry-run"], 2, "is not utf-8"),
    # static word checks (no model work), validation before work
    ("erase-anchor-names-concept", ["erase", "--concept", "cat", "--target", "a photo of a cat", "--anchor",
                                    "a cat toy", "--dry-run"], 2, "names the concept ('cat')"),
    ("erase-target-is-anchor", ["erase", "--concept-file", "{TARGET_IS_ANCHOR}", "--dry-run"], 2,
     "is its target prompt"),
    ("erase-retain-is-target", ER + ["--retain", "a photo of a sneaker"], 2, "is also a target prompt"),
    ("erase-max-acc-e-negative", ER + ["--max-acc-e", "-1"], 2, "--max-acc-e must be in [0, 1]"),
    ("audit-out-is-file", ["audit", "--concept", "sneaker", "--out", "{FILE}"], 2, "is a file, not a folder"),
    ("erase-gate-bogus-lists-auto", ER + ["--gate", "bogus"], 2, "(sace erase) 'auto'"),
    # adapters
    ("gen-adapter-huge-weights", G + ["--adapter", "{AD_HUGE}"], 2, "the adapter produces non-finite logits"),
    ("gen-adapter-gate-edited", G + ["--adapter", "{AD_GATE_EDITED}"], 2, "was edited after training"),
    # benchmarks that cannot apply to the model's domain
    ("eval-benchmark-imagenette-on-fashion", ["evaluate", "--benchmark", "imagenette"], 2,
     "--benchmark imagenette applies to text-to-image models"),
]


def _fill(args, w, out):
    return [str(a).format(**{k: str(v) for k, v in w.items()}) for a in args] + (
        [] if "--out" in args or "--dry-run" in args else ["--out", str(out)])


@pytest.mark.parametrize("name, args, status, message", CASES, ids=[c[0] for c in CASES])
def test_fault(name, args, status, message, world, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # default output folders (out/...) land in the test's folder
    code, _, err = run_cli(capsys, *_fill(args, world, tmp_path / "out"))
    assert_error(code, err, message, status)
    assert not world["MARKER"].exists()          # no pickle payload ran
    if name.startswith("attack-") and name != "attack-n-prompts-hint":
        assert not (tmp_path / "out" / "adapters").exists()   # refused before any training


def test_attack_hints_name_no_erase_options(world, capsys, tmp_path):
    code, _, err = run_cli(capsys, "attack", "--concept", "nosuch", *AT[3:], "--out", tmp_path / "o")
    assert_error(code, err, "unknown concept 'nosuch'")
    msg = last_error(err)
    assert "give --target" not in msg and "give --concept-file" not in msg and "it has no --target" in msg


# -- worst 1: a symlinked lock is never followed ------------------------------------------------------------
def test_symlinked_lock_is_refused_and_its_target_untouched(capsys, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".sace.lock").symlink_to(victim)
    code, _, err = run_cli(capsys, *G, "--out", out)
    assert_error(code, err, "is a symbolic link, not a sace lock file")
    assert victim.read_text() == "precious"
    assert not list(out.glob("*.png"))


def test_lock_that_is_a_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    (out / ".sace.lock").mkdir(parents=True)
    code, _, err = run_cli(capsys, *G, "--out", out)
    assert_error(code, err, ".sace.lock")


# -- worst 2: two concurrent sace attack runs into one --out ------------------------------------------------
ATTACK_SACE = ["attack", "--concept", "sneaker", "--methods", "original,sace", "--attacks", "vector",
               "--n-prompts", "1", "--eval-seeds", "1", "--search-seeds", "1", "--etas", "0,1", "--no-sanity"]


@pytest.fixture(scope="module")
def attack_pair(tmp_path_factory, fashion):
    """Run A (a real process, SACE trained with 6 steps) holds the folder; run B (in this process) starts
    while A holds the lock. Returns (out, A's exit status and stderr, B's exit status and stderr)."""
    out = tmp_path_factory.mktemp("attack2") / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    a = subprocess.Popen([sys.executable, "-m", "sace.cli", *ATTACK_SACE, "--sace-steps", "6", "--out", str(out)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".sace.lock"
    t0 = time.time()
    while time.time() - t0 < 300 and a.poll() is None:
        if lock.is_file() and lock.read_text().startswith("pid"):
            break
        time.sleep(0.05)
    b = _run_in_process(*ATTACK_SACE, "--sace-steps", "6", "--out", out)
    a_still_running = a.poll() is None
    _, a_err = a.communicate(timeout=600)
    return out, (a.returncode, a_err), b, a_still_running


def _run_in_process(*args):
    """``run_cli`` without pytest's capsys (for module-scoped fixtures): (status, stderr)."""
    import contextlib
    import io

    from sace import cli

    old, err = sys.argv, io.StringIO()
    sys.argv = ["sace", *[str(x) for x in args]]
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, err.getvalue()


def test_two_concurrent_attacks_the_second_is_refused(attack_pair):
    out, (a_code, a_err), (b_code, b_err), a_still_running = attack_pair
    assert a_still_running, "run A ended before run B tried the folder; the test did not test concurrency"
    assert a_code == 0, a_err[-2000:]
    assert_error(b_code, b_err, "another sace run (pid")
    assert "attack" in last_error(b_err) and "is writing to" in last_error(b_err)
    rows = json.loads((out / "metrics.json").read_text())["concepts"]["sneaker"]
    assert {r["target"] for r in rows} == {"original", "SACE"}
    man = json.loads((out / "sace_manifest.json").read_text())
    assert man["command"] == "attack" and man["status"] == "complete"
    assert man["settings"]["sace_steps"] == 6 and man["settings"]["methods"] == ["original", "sace"]
    assert man["settings"]["hashes"]["format"] == "sace.weights.v2"


# -- worst 3/4: a rerun with other --sace-steps / --anchor never reuses the adapter -------------------------
def test_rerun_with_other_sace_steps_or_anchor_is_refused_then_retrained(attack_pair, capsys):
    out = attack_pair[0]
    ad = out / "adapters" / "sneaker-sace" / "adapter.json"
    first = json.loads(ad.read_text())["attack_training"]
    assert first["steps"] == 6 and first["anchor"]
    code, _, err = run_cli(capsys, *ATTACK_SACE, "--sace-steps", "2", "--out", out)
    assert_error(code, err, "holds results made with other settings (sace_steps: 6 -> 2)")
    code, _, err = run_cli(capsys, *ATTACK_SACE, "--sace-steps", "6", "--anchor", "boot", "--out", out)
    assert_error(code, err, "anchor: None -> 'boot'")
    assert json.loads(ad.read_text())["attack_training"] == first          # nothing touched by the refusals
    code, outp, err = run_cli(capsys, *ATTACK_SACE, "--sace-steps", "2", "--force", "--out", out)
    assert code == 0, err[-2000:]
    assert "trained with other settings" in outp
    again = json.loads(ad.read_text())
    assert again["attack_training"]["steps"] == 2 and again["steps"] == 2
    log = json.loads((ad.parent / "train_log.json").read_text())["log"]
    assert len(log) == 2


def test_attack_interrupt_says_what_was_kept(monkeypatch, capsys, tmp_path):
    from sace.attacks import benchmark

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "run_attack", boom)
    code, _, err = run_cli(capsys, *AT, "--out", tmp_path / "o")
    assert_error(code, err, "no trained adapter", status=130)
    assert "run the same command again" in last_error(err)


# -- the README's `sace attack --adapter out/erase-sneaker ...` on an adapter from `sace erase` -------------
def test_readme_attack_with_an_adapter_from_sace_erase(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *ER)                # the default folder: out/erase-sneaker
    assert code == 0, err[-2000:]
    assert isinstance(json.loads((tmp_path / "out/erase-sneaker/adapter.json").read_text())["concept"], dict)
    code, outp, err = run_cli(capsys, "attack", "--concept", "sneaker", "--methods", "original,negprompt",
                              "--adapter", "out/erase-sneaker", "--attacks", "soft,discrete", "--n-prompts", "1",
                              "--eval-seeds", "1", "--search-seeds", "1", "--soft-steps", "1", "--queries", "1",
                              "--no-sanity", "--out", "out/attack")
    assert code == 0, err[-2000:]
    rows = json.loads((tmp_path / "out/attack/metrics.json").read_text())["concepts"]["sneaker"]
    assert {r["target"] for r in rows} == {"original", "negative prompt", "SACE (erase-sneaker)"}
    assert all(0.0 <= r["asr"] <= 1.0 for r in rows)


def test_erase_gate_auto_is_accepted(capsys, tmp_path):
    code, _, err = run_cli(capsys, *ER, "--gate", "auto", "--out", tmp_path / "e")
    assert code == 0, err[-2000:]
    gate = json.loads((tmp_path / "e" / "adapter.json").read_text())["config"]["gate"]
    assert gate == "scale0" or gate.startswith("scales:0")


# -- worst 5: a model differing only past the first 1024 elements of every tensor ---------------------------
def _past_1024(folder: Path) -> int:
    """Add 0.01 to every element past the first 1024 of every float tensor of the folder's weights files;
    returns how many tensors changed (those with more than 1024 elements)."""
    from safetensors.torch import load_file, save_file

    changed = 0
    for name in ("transformer.safetensors", "vae.safetensors"):
        sd = load_file(str(folder / name))
        for k, v in sd.items():
            if v.is_floating_point() and v.numel() > 1024:
                flat = v.flatten().clone()
                flat[1024:] += 0.01
                sd[k] = flat.view_as(v)
                changed += 1
        save_file(sd, str(folder / name))
    return changed


def test_model_differing_past_1024_elements_is_caught(tiny_model, capsys, tmp_path):
    from sace.fingerprint import weights_hash
    from sace.models.registry import load_model, save_model

    folder = save_model(tiny_model, tmp_path / "m")
    assert json.loads((folder / "model.json").read_text())["hashes"]["format"] == "sace.weights.v2"
    shutil.copytree(folder, tmp_path / "m2")
    assert _past_1024(tmp_path / "m2") > 10
    other = load_model(str(folder), load_text_encoder=False)
    with torch.no_grad():
        for v in other.transformer.state_dict().values():
            if v.is_floating_point() and v.numel() > 1024:
                v.view(-1)[1024:] += 0.01
    # the v1 fingerprint could not tell them apart, v2 can
    assert weights_hash(other.transformer, partial=True) == weights_hash(tiny_model.transformer, partial=True)
    assert weights_hash(other.transformer) != weights_hash(tiny_model.transformer)
    # the model.json check: the model.json of m, the weights of m2
    shutil.copy(folder / "model.json", tmp_path / "m2" / "model.json")
    with pytest.raises(SaceError, match="are not the ones its model.json records"):
        load_model(str(tmp_path / "m2"), load_text_encoder=False)
    code, _, err = run_cli(capsys, "generate", "--model", tmp_path / "m2", "--prompt", "x", "--n", "1",
                           "--out", tmp_path / "o")
    assert_error(code, err, "are not the ones its model.json records")


def test_adapter_base_check_sees_past_1024_elements(tiny_model, tmp_path):
    from sace.adapters import AdapterConfig, attach_adapter, detach_adapters, load_adapter, save_adapter
    from sace.models.registry import load_model

    ad = attach_adapter(tiny_model, AdapterConfig(name="b", modules=["cross_attn_q"], rank=2), seed=0)
    save_adapter(ad, tmp_path / "a", model=tiny_model)
    detach_adapters(tiny_model)
    other = load_model("infinity-tiny-fixture", load_text_encoder=False)
    with torch.no_grad():
        for v in other.transformer.state_dict().values():
            if v.is_floating_point() and v.numel() > 1024:
                v.view(-1)[1024:] += 0.01
    with pytest.raises(SaceError, match="trained on other 'infinity-tiny-fixture' transformer weights"):
        load_adapter(other, tmp_path / "a")


def test_v1_records_are_checked_the_old_way_with_a_clear_warning(tiny_model, tmp_path):
    from sace.fingerprint import weights_hash
    from sace.models.registry import load_model, save_model

    folder = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["hashes"] = {"transformer": weights_hash(tiny_model.transformer, ".branches.", partial=True),
                      "vae": weights_hash(tiny_model.vae, partial=True)}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="hashes of an older sace"):
        load_model(str(folder), load_text_encoder=False)


def test_full_fingerprint_is_cached_and_sees_in_place_edits(tiny_model):
    from sace.fingerprint import weights_hash

    m = tiny_model.transformer
    h = weights_hash(m)
    assert weights_hash(m) == h
    p = next(v for v in m.state_dict(keep_vars=True).values() if v.numel() > 1024)
    with torch.no_grad():
        old = p.view(-1)[-1].item()
        p.view(-1)[-1] += 1.0
    try:
        assert weights_hash(m) != h
    finally:
        with torch.no_grad():
            p.view(-1)[-1] = old
    assert weights_hash(m) == h


# -- readers: text cache, images, truncated PNGs, leftovers --------------------------------------------------
def test_bad_text_cache_files_are_misses(tmp_path):
    from safetensors.torch import save_file

    from sace.models.text import CachedTextEncoder, HashTextEncoder

    inner = HashTextEncoder(16)
    enc = CachedTextEncoder(inner, tmp_path)
    prompts = ["a cat", "a dog", "a red bird", "a boat"]
    want = inner.encode(prompts).tokens
    paths = [enc._path(p) for p in prompts]
    torch.save({"tokens": _Evil(tmp_path / "ran")}, paths[0])                   # a pickle
    paths[1].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"tok")            # truncated
    save_file({"tokens": torch.ones(2, 32)}, str(paths[2]))                      # another width
    save_file({"tokens": torch.full((3, 16), float("nan"))}, str(paths[3]))      # non-finite
    got = enc.encode(prompts).tokens
    assert torch.allclose(got, want)
    assert not (tmp_path / "ran").exists()
    again = CachedTextEncoder(inner, tmp_path).encode(prompts).tokens            # rewritten: now hits
    assert torch.allclose(again, want)


def test_images_not_images_and_bombs(tmp_path):
    from sace.images import MAX_PIXELS, load_png, open_rgb

    (tmp_path / "a.png").write_text("not a png")
    with pytest.raises(SaceError, match="is not a readable image"):
        open_rgb(tmp_path / "a.png", "--reference-images file")
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")                  # 81 M pixels in a few kB
    assert 9000 * 9000 > MAX_PIXELS and (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(SaceError, match="more than sace reads"):
        load_png(tmp_path / "bomb.png")


def test_reference_images_that_are_not_images(tmp_path):
    from sace.evaluation.benchmarks import _load_reference_images

    for n in ("a.png", "b.jpg"):
        (tmp_path / n).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(SaceError, match="--reference-images file .* is not a readable image"):
        _load_reference_images(tmp_path)


def test_resume_regenerates_a_truncated_png_and_cleans_leftovers(capsys, tmp_path):
    out = tmp_path / "g"
    args = ["generate", "--prompt", "a photo of a sneaker", "--n", "2", "--out", out]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    good = (out / "00001_s1.png").read_bytes()
    (out / "00001_s1.png").write_bytes(good[: len(good) // 2])               # a killed run's half file
    (out / ".00000_s0.png.k3x_9q2a.tmp").write_bytes(b"leftover")             # killed between write and rename
    (out / ".mine.tmp").write_bytes(b"not sace's")                            # another program's: kept
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    from sace.images import load_png

    # made again (alone, not in its first batch of two: equal up to float rounding of batched kernels)
    assert (load_png(out / "00001_s1.png") - load_png(_png(tmp_path, good))).abs().mean() < 0.02
    assert [p.name for p in out.rglob("*.tmp")] == [".mine.tmp"]


def _png(folder: Path, data: bytes) -> Path:
    (folder / "first.png").write_bytes(data)
    return folder / "first.png"


def test_failed_run_manifest_does_not_block_the_corrected_command(capsys, tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    (out / "sace_manifest.json").write_text(json.dumps({"format": "sace.outputs.v1", "command": "generate",
                                                        "status": "running", "settings": {"n": 99}}))
    code, _, err = run_cli(capsys, *G, "--out", out)
    assert code == 0, err[-2000:]
    assert (out / "00000_s0.png").exists()


def test_default_output_path_is_sanitised(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("../../x", "y" * 5000):
        f = tmp_path / "c.json"
        f.write_text(json.dumps({"name": name, "targets": ["a photo of a thing"], "anchor": "box"}))
        code, _, err = run_cli(capsys, "erase", "--concept-file", f, "--dry-run")
        assert code == 0, err[-2000:]
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made == ["erase-x", "erase-" + "y" * 80]
    assert not (tmp_path.parent / "x").exists() and not (tmp_path.parent.parent / "x").exists()


def test_the_table_has_enough_cases():
    assert len(CASES) >= 30
