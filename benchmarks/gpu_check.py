"""Real-model readiness on a GPU: speed, memory and numerical agreement of the model core.

With CUDA, a mid-size random-init Infinity (default 16 blocks, width 1152, 12 heads, 2048 text channels,
32 bits per token, the 2B's d32 VAE architecture; seeded) is measured at 512x512 (pn 0.25M, 2,521 tokens)
and 1024x1024 (pn 1M, 10,521 tokens):

* ``sample``: images/s of KV-cached batch sampling with classifier-free guidance (bf16 transformer,
  float32 VAE decode included), via :func:`sace.sampling.sample`;
* ``erase_scale0``: one SACE training step -- forward + backward of a one-token (scale-0) teacher-forced
  pass over a batch of prompts (:meth:`InfinityModel.forward_teacher_forced` with ``scales=[0]``);
* ``tf_full``: the same over the full schedule (what full fine-tuning baselines pay);
* the peak GPU memory of each.

Then, at pn 0.06M on identical inputs: teacher-forced logits of the same weights in float32 on the CPU
against float32 and bf16 on the GPU (max/mean absolute difference, relative difference, agreement of
the most likely bit); loading the model from a sharded folder with ``sace.models.registry.load_model``
in bf16 (peak GPU memory against the bf16 weight size: no float32 copy may appear); and one call of
:func:`sace.generate.generate` on the GPU (per-image generators).

Without CUDA (or with ``--tiny``) a tiny configuration runs end to end on the CPU (used by the tests)
and the report says that no GPU was found. Results are printed and written as JSON to ``--out``.

    python benchmarks/gpu_check.py --out gpu_check.json          # ~2-4 minutes on an H200
    python benchmarks/gpu_check.py --tiny --out /tmp/tiny.json   # seconds, CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from sace.io import save_safetensors, write_json
from sace.models.base import Condition
from sace.models.infinity.model import InfinityModel
from sace.models.infinity.schedules import infinity_schedule
from sace.models.infinity.transformer import InfinityConfig, InfinityTransformer
from sace.models.infinity.vae import BSQVAE, VAEConfig
from sace.sampling import sample

T0 = time.perf_counter()

#: per resolution: pixel budget, sampling batch, erasure (scale-0) batch, full teacher-forcing batch
FULL_PLAN = {"512x512": ("0.25M", 16, 32, 4), "1024x1024": ("1M", 8, 32, 2)}
TINY_PLAN = {"256x256": ("0.06M", 2, 4, 2)}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


class HashTextEncoder:
    """Stand-in text encoder (words -> fixed random vectors seeded by CRC32), for the generate() check."""

    def __init__(self, channels: int):
        self.channels, self.name = channels, "hash-stub"

    def encode(self, prompts):
        words = [p.split() for p in prompts]
        t = max(len(w) for w in words)
        tok, mask = torch.zeros(len(prompts), t, self.channels), torch.zeros(len(prompts), t, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                tok[i, j] = torch.randn(self.channels, generator=torch.Generator().manual_seed(zlib.crc32(w.encode())))
            mask[i, : len(ws)] = True
        return Condition(tok, mask, tuple(prompts))


def configs(tiny: bool, args) -> tuple[InfinityConfig, VAEConfig, VAEConfig]:
    """Transformer config, VAE config for speed runs, small VAE for the logits checks."""
    if tiny:
        cfg = InfinityConfig(depth=2, embed_dim=64, num_heads=2, text_channels=64, codebook_dim=16, block_chunks=1)
        vae = VAEConfig(codebook_dim=16, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                        decoder_ch_mult=[1] * 5, patch_size=16)
        return cfg, vae, vae
    cfg = InfinityConfig(depth=args.depth, embed_dim=args.width, num_heads=args.heads, text_channels=2048,
                         codebook_dim=32, block_chunks=1)
    vae = VAEConfig(codebook_dim=32, base_ch=128, num_res_blocks=2, encoder_ch_mult=[1, 2, 4, 4, 4],
                    decoder_ch_mult=[1, 2, 4, 4, 4], patch_size=16)
    small = VAEConfig(codebook_dim=32, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                      decoder_ch_mult=[1] * 5, patch_size=16)
    return cfg, vae, small


def random_condition(b: int, t: int, channels: int, seed: int) -> Condition:
    """``b`` prompts of 1..t tokens (seeded float32 token states)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, t, channels, generator=g) * 0.2
    lengths = torch.randint(max(1, t // 2), t + 1, (b,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    return Condition(tokens * mask[..., None], mask)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> dict:
    """Seconds per call (after warm-up) and peak GPU memory (GiB) over warm-up and timed calls."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    out = {"seconds": (time.perf_counter() - t) / repeats, "repeats": repeats}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def guarded(label: str, key: str, fn: Callable[[], dict], results: dict, deadline: float) -> None:
    """Run one check into ``results[key]``; record its error (OOM included) instead of aborting, and skip
    it once the deadline has passed."""
    if time.perf_counter() > deadline:
        results[key] = {"skipped": "time budget spent (--budget-s)"}
        log(f"{label}: skipped (time budget)")
        return
    try:
        results[key] = fn()
        log(f"{label}: {json.dumps(results[key])}")
    except Exception as e:  # noqa: BLE001 - reported, and the next check runs
        results[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        log(f"{label}: FAILED {results[key]['error']}")
        traceback.print_exc()
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def speed_checks(model: InfinityModel, plan: dict, device: torch.device, tiny: bool, deadline: float) -> dict:
    text_t = 8 if tiny else 32
    ct = model.transformer.cfg.text_channels
    d = model.bits_per_token
    warm, reps = (1, 1) if tiny else (1, 2)
    out: dict = {}
    for res, (pn, b_sample, b_erase, b_full) in plan.items():
        sch = infinity_schedule(1.0, pn)
        r: dict = {"pn": pn, "tokens": sch.num_tokens, "image_size": list(sch.image_size)}
        out[res] = r
        log(f"{res} (pn {pn}, {sch.num_tokens} tokens)")

        def do_sample(b=b_sample, sch=sch):
            cond = random_condition(b, text_t, ct, 1).to(device)
            gen = torch.Generator(device=device).manual_seed(0)
            res_ = sample(model, cond, schedule=sch, guidance=3.0, temperature=1.0, top_k=0, top_p=0.97,
                          generator=gen, keep_logits=False)
            assert res_.images is not None and tuple(res_.images.shape[-2:]) == sch.image_size
            assert bool(torch.isfinite(res_.images).all()), "non-finite images"

        def run_sample(b=b_sample, do_sample=do_sample):
            m = measure(do_sample, device, warm, reps)
            return {**m, "batch": b, "images_per_s": b / m["seconds"], "guidance": 3.0}

        guarded(f"{res} sample", "sample", run_sample, r, deadline)

        def train_step(b: int, scales, sch=sch):
            cond = random_condition(b, text_t, ct, 2).to(device)
            g = torch.Generator().manual_seed(3)
            tf = None
            if scales is None:
                tf = torch.randn(b, sch.num_tokens - 1, d, generator=g).to(device)
            logits = model.forward_teacher_forced(cond, tf, sch, scales=scales)
            target = [torch.randint(0, 2, z.shape[:-1], generator=g).to(device) for z in logits.per_scale]
            loss = sum(F.cross_entropy(z.float().reshape(-1, 2), y.reshape(-1))
                       for z, y in zip(logits.per_scale, target, strict=True))
            loss.backward()
            model.transformer.zero_grad(set_to_none=True)

        def run_erase(b=b_erase, train_step=train_step):
            m = measure(lambda: train_step(b, [0]), device, 2 if not tiny else 1, 10 if not tiny else 2)
            return {**m, "batch": b, "tokens_per_prompt": 1}

        def run_full(b=b_full, train_step=train_step, sch=sch):
            m = measure(lambda: train_step(b, None), device, warm, reps)
            return {**m, "batch": b, "tokens_per_prompt": sch.num_tokens}

        guarded(f"{res} erase_scale0", "erase_scale0", run_erase, r, deadline)
        guarded(f"{res} tf_full", "tf_full", run_full, r, deadline)
        if "seconds" in r.get("erase_scale0", {}) and "seconds" in r.get("tf_full", {}):
            r["tf_full_over_erase_per_prompt"] = (r["tf_full"]["seconds"] / b_full) / (
                r["erase_scale0"]["seconds"] / b_erase)
    return out


def diff_stats(ref: torch.Tensor, other: torch.Tensor) -> dict:
    ref, other = ref.float().cpu(), other.float().cpu()
    delta = (ref - other).abs()
    scale = ref.abs().max().clamp_min(1e-12)
    agree = ((ref[..., 1] > ref[..., 0]) == (other[..., 1] > other[..., 0])).float().mean()
    return {"max_abs": float(delta.max()), "mean_abs": float(delta.mean()), "max_rel": float(delta.max() / scale),
            "ref_max_abs_logit": float(scale), "argmax_bit_agreement": float(agree)}


def correctness(tr_cpu: InfinityTransformer, vae_cfg: VAEConfig, device: torch.device, tiny: bool) -> dict:
    """Teacher-forced logits (all scales of pn 0.06M, guidance 3) of identical weights and inputs."""
    sch = infinity_schedule(1.0, "0.06M")
    ct, d = tr_cpu.cfg.text_channels, tr_cpu.cfg.codebook_dim
    cond = random_condition(2, 16, ct, 4)
    tf = torch.randn(2, sch.num_tokens - 1, d, generator=torch.Generator().manual_seed(5))
    vae = BSQVAE(vae_cfg)

    def logits(tr: InfinityTransformer, dev: torch.device) -> torch.Tensor:
        m = InfinityModel(tr, copy.deepcopy(vae).to(dev), None, sch).eval()
        with torch.no_grad():
            z = m.forward_teacher_forced(cond.to(dev), tf.to(dev), sch, guidance=3.0, temperature=1.0)
        return torch.cat([x.float().cpu() for x in z.per_scale], 1)

    t = time.perf_counter()
    ref = logits(tr_cpu, torch.device("cpu"))
    out: dict = {"pn": "0.06M", "batch": 2, "tokens": sch.num_tokens, "cpu_fp32_seconds": time.perf_counter() - t,
                 "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                 "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
    variants = [("cpu_bf16", torch.device("cpu"), torch.bfloat16)] if device.type == "cpu" else [
        ("gpu_fp32", device, torch.float32), ("gpu_bf16", device, torch.bfloat16)]
    for name, dev, dt in variants:
        tr = copy.deepcopy(tr_cpu).to(device=dev, dtype=dt)
        out[f"{name}_vs_cpu_fp32"] = diff_stats(ref, logits(tr, dev))
        del tr
    # loose sanity bounds: fp32 should agree to rounding noise, bf16 to ~1% of the logit range
    checks = {"gpu_fp32_vs_cpu_fp32": 1e-3, "gpu_bf16_vs_cpu_fp32": 5e-2, "cpu_bf16_vs_cpu_fp32": 5e-2}
    out["ok"] = all(out[k]["max_rel"] <= tol for k, tol in checks.items() if k in out)
    return out


def load_check(model: InfinityModel, device: torch.device) -> dict:
    """Save as a model folder + a 3-shard HF-style transformer folder; load it in bf16 with load_model."""
    from sace.models.registry import load_model, save_model

    with tempfile.TemporaryDirectory(prefix="sace_gpu_check_") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        save_model(model, tmp / "model")
        sd = {k: v.float() for k, v in model.transformer.state_dict().items()}
        keys = sorted(sd)
        shards = [keys[i::3] for i in range(3)]
        weight_map = {}
        for i, ks in enumerate(shards):
            name = f"model-{i + 1:05d}-of-00003.safetensors"
            save_safetensors(tmp / "sharded" / name, {k: sd[k] for k in ks})
            weight_map.update({k: name for k in ks})
        write_json(tmp / "sharded" / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
        del sd
        save_s = time.perf_counter() - t
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        t = time.perf_counter()
        loaded = load_model(str(tmp / "model"), device=device, dtype=torch.bfloat16,
                            transformer_path=str(tmp / "sharded"))
        sync(device)
        out = {"save_seconds": save_s, "load_seconds": time.perf_counter() - t}
        bf16_bytes = sum(p.numel() * p.element_size() for p in loaded.transformer.parameters())
        vae_bytes = sum(p.numel() * p.element_size() for p in loaded.vae.parameters())
        out["transformer_dtypes"] = sorted({str(p.dtype) for p in loaded.transformer.parameters()})
        out["vae_dtypes"] = sorted({str(p.dtype) for p in loaded.vae.parameters()})
        ref = {k: v.to(torch.bfloat16) for k, v in model.transformer.state_dict().items()}
        out["equal_to_source_bf16"] = all(torch.equal(v.cpu(), ref[k].cpu())
                                          for k, v in loaded.transformer.state_dict().items())
        out["weights_gib"] = (bf16_bytes + vae_bytes) / 2**30
        if device.type == "cuda":
            out["peak_gib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
            out["peak_over_weights"] = out["peak_gib"] / out["weights_gib"]
            # a float32 copy of the transformer would put this near 3x
            out["ok"] = out["peak_over_weights"] < 1.5 and out["equal_to_source_bf16"]
        else:
            out["ok"] = out["equal_to_source_bf16"] and out["transformer_dtypes"] == ["torch.bfloat16"]
        del loaded
    return out


def generate_check(model: InfinityModel, tiny: bool) -> dict:
    """sace.generate.generate on the model's device, batch 4 vs batches of 2 (same seeds)."""
    from sace.generate import generate

    model.text_encoder = HashTextEncoder(model.transformer.cfg.text_channels)
    prompts = ["a red dress", "a pair of white sneakers", "a leather bag on a table", "a wool coat"]
    seeds = [11, 12, 13, 14]
    sch_backup = model.schedule
    model.schedule = infinity_schedule(1.0, "0.06M")
    try:
        t = time.perf_counter()
        a = generate(model, prompts, seeds, batch_size=4)
        secs = time.perf_counter() - t
        b = generate(model, prompts, seeds, batch_size=2)
    finally:
        model.schedule = sch_backup
        model.text_encoder = None
    q = lambda x: x.clamp(0, 1).mul(255).round().to(torch.uint8)  # what the PNG stores
    return {"pn": "0.06M", "seconds_batch4": secs, "max_abs_diff_batch4_vs_2": float((a - b).abs().max()),
            "png_pixels_differing": int((q(a) != q(b)).sum()), "png_pixels": int(q(a).numel())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="JSON report path")
    ap.add_argument("--tiny", action="store_true", help="tiny CPU configuration (also used without CUDA)")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=1152)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip remaining checks after this many seconds")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: speed,correctness,load,generate")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = torch.device("cuda" if cuda and not args.tiny else "cpu")
    deadline = T0 + args.budget_s
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    report: dict = {
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device), "tiny": tiny,
        "gpu": None,
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        report["gpu"] = {"name": p.name, "memory_gib": p.total_memory / 2**30, "capability": f"{p.major}.{p.minor}",
                         "cuda": torch.version.cuda}
        log(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        report["note"] = ("no CUDA GPU found: ran the tiny CPU variant" if not cuda
                          else "--tiny: ran the tiny CPU variant")
        log(report["note"])

    cfg, vae_cfg, small_vae_cfg = configs(tiny, args)
    torch.manual_seed(args.seed)
    tr_cpu = InfinityTransformer(cfg)
    vae = BSQVAE(vae_cfg)
    n_tr = sum(p.numel() for p in tr_cpu.parameters())
    report["config"] = {"transformer": cfg.to_dict(), "vae": vae_cfg.to_dict(), "seed": args.seed}
    report["params"] = {"transformer": n_tr, "vae": sum(p.numel() for p in vae.parameters())}
    log(f"model: depth {cfg.depth}, width {cfg.embed_dim}, heads {cfg.num_heads}: "
        f"{n_tr / 1e6:.1f}M transformer params")

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = InfinityModel(copy.deepcopy(tr_cpu).to(device=device, dtype=dtype), vae.to(device), None,
                          infinity_schedule(1.0, "0.06M")).eval()
    report["speed_dtype"] = str(dtype)

    if "speed" not in skip:
        report["speed"] = speed_checks(model, TINY_PLAN if tiny else FULL_PLAN, device, tiny, deadline)
    sections: dict = {}
    if "generate" not in skip:
        guarded("generate", "generate", lambda: generate_check(model, tiny), sections, deadline)
    if "load" not in skip:
        guarded("load", "load", lambda: load_check(model, device), sections, deadline)
    model = None  # free the GPU copy before the correctness copies
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if "correctness" not in skip:
        guarded("correctness", "correctness", lambda: correctness(tr_cpu, small_vae_cfg, device, tiny), sections,
                deadline)
    report.update(sections)
    report["total_seconds"] = time.perf_counter() - T0
    write_json(args.out, report)
    log(f"wrote {args.out} ({report['total_seconds']:.0f} s)")
    summary = []
    for res, r in report.get("speed", {}).items():
        s = r.get("sample", {})
        e = r.get("erase_scale0", {})
        f = r.get("tf_full", {})
        fmt = lambda x, k, u: (f"{x[k]:.3g}{u}" if k in x else "n/a")
        summary.append(f"{res}: {fmt(s, 'images_per_s', ' img/s')} (peak {fmt(s, 'peak_gib', ' GiB')}), "
                       f"scale-0 step {fmt(e, 'seconds', ' s')} (peak {fmt(e, 'peak_gib', ' GiB')}), "
                       f"full TF step {fmt(f, 'seconds', ' s')} (peak {fmt(f, 'peak_gib', ' GiB')})")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
