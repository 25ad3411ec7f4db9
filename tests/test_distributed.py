"""Scale-out and real-model readiness: sharded generation/evaluation (one process and two gloo processes),
resume, the model overview, streaming a sharded checkpoint folder into a meta-built model, and the GPU
check's CPU smoke run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sace.distributed import DistContext, batch_plan, generate_sharded, map_sharded, shard_indices
from sace.errors import CheckpointError, SaceError
from tests.helpers import torch_threads

from .dist_worker import HashTextEncoder, load_for_test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPTS = ["a red dress", "a pair of white sneakers", "a leather bag", "a wool coat", "a black shirt"]
SEEDS = [101, 102, 103, 104, 105]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(HERE), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # the workers and the in-process reference both use one thread
    env.setdefault("HF_HUB_OFFLINE", "1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fashion_or_skip() -> str:
    """``fashion`` (or the model named by ``SACE_DIST_TEST_MODEL``, for development); skip when not built."""
    from sace.models.registry import get_spec

    name = os.environ.get("SACE_DIST_TEST_MODEL", "fashion")
    try:
        get_spec(name)
    except SaceError:
        pytest.skip(f"the model {name!r} is not built in this checkout")
    return name


@pytest.fixture()
def one_thread():
    """One intra-op thread (tiny models gain nothing from more; the 2-process workers use one too)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def stub_model():
    """The tiny fixture with a deterministic stand-in text encoder."""
    return load_for_test("infinity-tiny-fixture")


# -- sharding arithmetic --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["strided", "contiguous"])
def test_shard_indices_partition(mode):
    for n in (0, 1, 2, 5, 17):
        for w in (1, 2, 3, 8):
            parts = [shard_indices(n, r, w, mode) for r in range(w)]
            assert sorted(i for p in parts for i in p) == list(range(n))
            assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert shard_indices(7, 1, 3, "strided") == [1, 4]
    assert shard_indices(7, 0, 3, "contiguous") == [0, 1, 2]
    with pytest.raises(SaceError):
        shard_indices(3, 2, 2)
    with pytest.raises(SaceError):
        shard_indices(3, 0, 1, "random")


def test_batch_plan_keeps_global_batches():
    plans = [batch_plan(11, 3, r, 2) for r in range(2)]
    assert plans[0] == [[0, 1, 2], [6, 7, 8]] and plans[1] == [[3, 4, 5], [9, 10]]
    with pytest.raises(SaceError):
        batch_plan(4, 0, 0, 1)


def test_single_process_context():
    ctx = DistContext()
    assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
    assert ctx.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    ctx.barrier()
    assert ctx.gather_objects([1, "a"]) == [1, "a"]
    assert ctx.shard_indices(4) == [0, 1, 2, 3]


def test_map_sharded_order_batched_and_errors():
    items = list(range(10))
    assert map_sharded(lambda x: x * x, items) == [x * x for x in items]
    assert map_sharded(lambda xs: [x + 1 for x in xs], items, batch_size=3) == [x + 1 for x in items]
    with pytest.raises(SaceError, match="returned 1 results"):
        map_sharded(lambda xs: xs[:1], items, batch_size=3)
    with pytest.raises(ZeroDivisionError):  # one process: the original error propagates
        map_sharded(lambda x: 1 / 0, items)


# -- generation: one process ------------------------------------------------------------------------------
def test_generate_sharded_single_process_matches_and_resumes(stub_model, tmp_path, one_thread):
    from sace.generate import generate_to_dir

    ref = generate_to_dir(stub_model, PROMPTS, SEEDS, tmp_path / "ref", batch_size=2)
    out = tmp_path / "sharded"
    paths = generate_sharded(stub_model, PROMPTS, SEEDS, out, batch_size=2, progress=False)
    assert [p.name for p in paths] == [p.name for p in ref]
    for a, b in zip(ref, paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    index = json.loads((out / "index.json").read_text())
    assert index["world_size"] == 1 and index["count"] == len(PROMPTS)
    assert [(e["prompt"], e["seed"], e["file"]) for e in index["images"]] == [
        (p, s, q.name) for p, s, q in zip(PROMPTS, SEEDS, paths, strict=True)]
    assert index["settings"]["guidance"] == stub_model.defaults["guidance"]

    # resume: delete one image; only it is written again, identical to before
    old = 1_000_000_000
    for p in paths:
        os.utime(p, ns=(old, old))
    victim = paths[3]
    before = victim.read_bytes()
    victim.unlink()
    again = generate_sharded(stub_model, PROMPTS, SEEDS, out, batch_size=2, progress=False)
    assert again == paths
    assert victim.read_bytes() == before
    assert victim.stat().st_mtime_ns != old
    assert all(p.stat().st_mtime_ns == old for p in paths if p != victim)


def test_generate_sharded_rejects_bad_input(stub_model, tmp_path):
    with pytest.raises(SaceError, match="seeds"):
        generate_sharded(stub_model, PROMPTS, SEEDS[:2], tmp_path)
    with pytest.raises(SaceError, match="empty"):
        generate_sharded(stub_model, ["ok", " "], [1, 2], tmp_path)
    with pytest.raises(SaceError, match="batch_size"):
        generate_sharded(stub_model, PROMPTS, SEEDS, tmp_path, batch_size=0)


# -- generation: two gloo processes (the embedded model) --------------------------------------------------
def test_two_process_generation_matches_single_process(tmp_path, one_thread):
    name = _fashion_or_skip()
    from sace.generate import generate_to_dir, load_png

    job = {"prompts": PROMPTS, "seeds": SEEDS, "batch_size": 2}
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "dist_worker.py"), "--model", name,
           "--job", str(tmp_path / "job.json"), "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "worker_result.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    # item 4 belongs to rank 0 of 2 (strided): the error names that rank and reached both processes
    assert "rank 0" in result["error"] and "item is the last one" in result["error"]

    # the single-process reference, with the workers' intra-op thread count (``one_thread``): CPU kernels
    # split their sums by thread, so the thread count (like the batch) moves results by float rounding
    model = load_for_test(name)
    ref = generate_to_dir(model, PROMPTS, SEEDS, tmp_path / "single", batch_size=2)
    got = [Path(p) for p in result["paths"]]
    assert [p.name for p in got] == [p.name for p in ref]
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(load_png(a), load_png(b)), f"{b.name} differs from the single-process image"
    index = json.loads((out / "index.json").read_text())
    assert index["world_size"] == 2
    assert [e["file"] for e in index["images"]] == [p.name for p in ref]
    assert [e["prompt"] for e in index["images"]] == PROMPTS and [e["seed"] for e in index["images"]] == SEEDS
    assert result["means"] == pytest.approx([float(load_png(p).mean()) for p in ref], abs=1e-6)


# -- model overview ---------------------------------------------------------------------------------------
def test_describe_models():
    from sace.models.registry import describe_models

    rows = {r["name"]: r for r in describe_models()}
    assert {"infinity-2b", "infinity-8b", "infinity-tiny-fixture", "fashion"} <= set(rows)
    assert rows["infinity-2b"]["params"]["transformer"] == 2_204_564_032
    assert rows["infinity-8b"]["params"]["transformer"] == 8_375_791_824
    two = rows["infinity-2b"]
    assert two["weights_gb"]["transformer_bf16"] == pytest.approx(4.409, abs=1e-3)
    assert two["schedule"]["tokens"] == 10521 and two["schedule"]["image_size"] == [1024, 1024]
    assert two["files"]["hub_repo"] == "FoundationVision/Infinity"
    assert two["text_encoder"]["kind"] == "t5"
    assert rows["infinity-tiny-fixture"]["exists"] is True
    json.dumps(list(rows.values()))  # JSON-serialisable as it is


# -- sharded checkpoint folders ---------------------------------------------------------------------------
def _write_sharded(state: dict, folder: Path, n_shards: int = 3, official_names: bool = True,
                   depth: int = 2, chunks: int = 2) -> dict:
    """An HF-style folder: ``model.safetensors.index.json`` + ``n_shards`` safetensors files."""
    import re

    from safetensors.torch import save_file

    per = depth // chunks

    def official(k: str) -> str:
        m = re.match(r"^blocks\.(\d+)\.", k)
        if not (official_names and m):
            return k
        i = int(m.group(1))
        return f"block_chunks.{i // per}.module.{i % per}." + k[m.end():]

    folder.mkdir(parents=True)
    keys = sorted(state)
    weight_map = {}
    for s in range(n_shards):
        name = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {official(k): state[k].contiguous() for k in keys[s::n_shards]}
        save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return weight_map


def test_load_model_from_sharded_folder(tmp_path, tiny_model):
    from sace.models.infinity.checkpoint import read_state_dict
    from sace.models.registry import load_model

    state = tiny_model.transformer.state_dict()
    _write_sharded(state, tmp_path / "sharded")
    assert len(list(read_state_dict(tmp_path / "sharded"))) == 3  # streamed one shard at a time

    m = load_model("infinity-tiny-fixture", transformer_path=str(tmp_path / "sharded"))
    got = m.transformer.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    for k, v in tiny_model.vae.state_dict().items():
        assert torch.equal(m.vae.state_dict()[k], v), k


def test_load_model_bf16_never_materialises_fp32(tmp_path, tiny_model, monkeypatch):
    from sace.models.infinity.transformer import InfinityTransformer
    from sace.models.registry import load_model

    _write_sharded(tiny_model.transformer.state_dict(), tmp_path / "sharded", n_shards=2)
    seen = []
    original = InfinityTransformer.to_empty

    def spy(self, *a, **kw):
        seen.append({p.dtype for p in self.parameters()} | {p.device.type for p in self.parameters()})
        return original(self, *a, **kw)

    monkeypatch.setattr(InfinityTransformer, "to_empty", spy)
    m = load_model("infinity-tiny-fixture", dtype=torch.bfloat16, transformer_path=str(tmp_path / "sharded"))
    assert seen == [{torch.bfloat16, "meta"}]  # cast on the meta device: no float32 copy is allocated
    assert all(p.dtype == torch.bfloat16 for p in m.transformer.parameters())
    assert all(p.dtype == torch.float32 for p in m.vae.parameters())
    for k, v in tiny_model.transformer.state_dict().items():
        assert torch.equal(m.transformer.state_dict()[k], v.to(torch.bfloat16)), k


def test_sharded_folder_errors_name_the_problem(tmp_path, tiny_model):
    from sace.models.registry import load_model

    state = dict(tiny_model.transformer.state_dict())
    state.pop("head.bias")
    _write_sharded(state, tmp_path / "missing_key")
    with pytest.raises(CheckpointError, match="head.bias"):
        load_model("infinity-tiny-fixture", transformer_path=str(tmp_path / "missing_key"))
    wm = _write_sharded(tiny_model.transformer.state_dict(), tmp_path / "missing_shard")
    (tmp_path / "missing_shard" / sorted(set(wm.values()))[1]).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model("infinity-tiny-fixture", transformer_path=str(tmp_path / "missing_shard"))


def test_short_cfg_uncond_is_padded_with_zeros(tmp_path, tiny_model):
    from sace.models.registry import load_model

    state = dict(tiny_model.transformer.state_dict())
    state["cfg_uncond"] = state["cfg_uncond"][:100].clone()
    _write_sharded(state, tmp_path / "short", n_shards=2)
    m = load_model("infinity-tiny-fixture", transformer_path=str(tmp_path / "short"))
    cu = m.transformer.cfg_uncond
    assert torch.equal(cu[:100], state["cfg_uncond"]) and bool((cu[100:] == 0).all())


# -- GPU check: CPU smoke run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_gpu_check_tiny_cpu_smoke(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = _env()
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["tiny"] is True and rep["gpu"] is None and "no CUDA GPU" in rep["note"]
    speed = rep["speed"]["256x256"]
    assert speed["sample"]["images_per_s"] > 0
    for key in ("sace_scale0", "sace_early", "svare"):      # real trainer steps, timed
        assert speed[key]["seconds_per_step"] > 0, speed[key]
        assert speed["predicted"][key]["flops"] > 0 and speed["predicted"][key]["memory_gib"] > 0
    assert speed["sace_early"]["tokens_per_step"] > speed["sace_scale0"]["tokens_per_step"]
    assert rep["load"]["ok"] is True and rep["correctness"]["ok"] is True
    assert rep["generate"]["png_pixels_differing"] == 0
    assert "no CUDA GPU" in proc.stdout


def test_hash_text_encoder_is_deterministic():
    enc = HashTextEncoder(8)
    a, b = enc.encode(["a b", "c"]), enc.encode(["a b", "c"])
    assert torch.equal(a.tokens, b.tokens) and a.mask.tolist() == [[True, True], [True, False]]
