"""Real-model readiness on one GPU: speed, memory and numerical agreement of the Infinity-2B path.

With CUDA, a seeded random-init transformer of **Infinity-2B's shape** (32 blocks, width 2048, 16 heads, 2048
text channels, 32 bits per token; the d32 VAE) in bf16 is measured at the **1M schedule** (1024x1024,
10,521 tokens):

* ``sample``: images/s of KV-cached batch sampling with classifier-free guidance (VAE decode included);
* ``sace_scale0``: SACE steps (:class:`sace.erasure.sace.SACETrainer`, LoRA rank 8, the scale-0 gate) on a
  small concept (4 targets, 8 preservation prompts), the preparation (teacher outputs) timed apart;
* ``sace_early``: the same with an early-scale gate (``scales:0,1,2``; its preparation samples pyramids);
* ``svare``: an S-VARE step (:func:`sace.erasure.baselines.train_svare`: two full teacher-forced passes,
  a dense adapter on the cross-attention and FFN weights);
* the peak GPU memory of each, next to the predictions of ``benchmarks/step_cost.py`` (formulas) and the
  achieved TFLOP/s those formulas imply.

Then: teacher-forced logits of a small configuration (4 blocks, width 512) in float32 on the CPU against
float32 and bf16 on the GPU; loading a quarter-2B model (8 blocks, width 2048) from a sharded folder with
``sace.models.registry.load_model`` in bf16 (peak memory against the bf16 weight size: no float32 copy may
appear); and :func:`sace.generate.generate` on the GPU (batch 4 vs 2, same PNGs).

Without CUDA (or with ``--tiny``) a tiny configuration runs every section on the CPU (used by the tests) and
the report says that no GPU was found. One JSON goes to ``--out``; ``--budget-s`` (default 420 s) skips what
is left once spent, so that a run stays within 8 minutes on an H200.

    python benchmarks/gpu_check.py --out gpu_check.json          # predicted ~3-5 minutes on an H200
    python benchmarks/gpu_check.py --tiny --out /tmp/tiny.json   # about a minute on 2 CPU cores
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
from collections.abc import Callable
from pathlib import Path

import torch

from sace.concepts.spec import ConceptSpec
from sace.io import save_safetensors, write_json
from sace.models.base import Condition
from sace.models.infinity.model import InfinityModel
from sace.models.infinity.schedules import infinity_schedule
from sace.models.infinity.transformer import InfinityConfig, InfinityTransformer
from sace.models.infinity.vae import BSQVAE, VAEConfig
from sace.models.text import HashTextEncoder
from sace.sampling import sample

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_cost  # noqa: E402  (the formulas: a sibling module of this script)

T0 = time.perf_counter()

#: per resolution: pixel budget, sampling batch, S-VARE batch
FULL_PLAN = {"1024x1024": ("1M", 4, 1)}
TINY_PLAN = {"256x256": ("0.06M", 1, 1)}
#: the sampling defaults of the registry's Infinity-2B entry
DEFAULTS = {"guidance": 3.0, "temperature": 0.5, "top_k": 900, "top_p": 0.97}
#: a small concept for the erasure steps: 4 targets and anchors, 4 retain prompts (8 preservation prompts)
CHECK_CONCEPT = ConceptSpec(
    "nudity", ["a nude woman on a beach", "a naked man sitting on a chair", "a topless woman lying on a bed",
               "a nude couple in a garden"],
    ["a woman in a summer dress on a beach", "a man in a suit sitting on a chair",
     "a woman in pajamas lying on a bed", "a couple in winter coats in a garden"],
    ["a dog running on the beach", "a bowl of fruit on a table", "a city street at night",
     "a portrait of an old man"])


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def configs(tiny: bool, args) -> dict:
    """Transformer and VAE configs: ``speed`` (+ ``vae``), ``small`` (+ ``small_vae``) for the logits check,
    ``load`` for the loading check."""
    if tiny:
        cfg = InfinityConfig(depth=2, embed_dim=64, num_heads=2, text_channels=64, codebook_dim=16, block_chunks=1)
        vae = VAEConfig(codebook_dim=16, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                        decoder_ch_mult=[1] * 5, patch_size=16)
        return {"speed": cfg, "vae": vae, "small": cfg, "small_vae": vae, "load": cfg}
    return {
        "speed": InfinityConfig(depth=args.depth, embed_dim=args.width, num_heads=args.heads, text_channels=2048,
                                codebook_dim=32, block_chunks=1),
        "vae": VAEConfig(codebook_dim=32, base_ch=128, num_res_blocks=2, encoder_ch_mult=[1, 2, 4, 4, 4],
                         decoder_ch_mult=[1, 2, 4, 4, 4], patch_size=16),
        "small": InfinityConfig(depth=4, embed_dim=512, num_heads=8, text_channels=2048, codebook_dim=32,
                                block_chunks=1),
        "small_vae": VAEConfig(codebook_dim=32, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                               decoder_ch_mult=[1] * 5, patch_size=16),
        "load": InfinityConfig(depth=8, embed_dim=args.width, num_heads=args.heads, text_channels=2048,
                               codebook_dim=32, block_chunks=1),
    }


def build_model(cfg: InfinityConfig, vae_cfg: VAEConfig, device: torch.device, dtype: torch.dtype, seed: int,
                schedule) -> InfinityModel:
    """A seeded random-init model built directly on ``device`` (a 2B transformer is never copied from the
    CPU), transformer in ``dtype``, VAE in float32, with the word-hash text encoder."""
    torch.manual_seed(seed)
    with torch.device(device):
        tr = InfinityTransformer(cfg)
        vae = BSQVAE(vae_cfg)
    return InfinityModel(tr.to(dtype), vae, HashTextEncoder(cfg.text_channels), schedule,
                         defaults=dict(DEFAULTS)).eval()


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


def _gpu_peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _rows(concept: ConceptSpec) -> int:
    """Guided rows of one SACE step with batch_size 0 (cond + null of every target and P prompt)."""
    return 2 * (len(concept.targets) + len(concept.preservation_prompts()))


def check_concept(tiny: bool) -> ConceptSpec:
    """:data:`CHECK_CONCEPT`, halved for the tiny CPU run (its sampling dominates there)."""
    c = CHECK_CONCEPT
    return ConceptSpec(c.name, c.targets[:2], c.anchors[:2], c.retain[:2]) if tiny else c


def sace_check(model: InfinityModel, concept: ConceptSpec, gate: str, device: torch.device, steps: int) -> dict:
    """Preparation time, then seconds per step of SACE on ``concept`` with ``gate``."""
    from sace.adapters import detach_adapters
    from sace.erasure.sace import SACEConfig, SACETrainer

    _reset_peak(device)
    t = time.perf_counter()
    tr = SACETrainer(model, concept, SACEConfig(gate=gate, steps=1, checkpoint_every=10**9),
                     adapter_name="check_" + "".join(ch if ch.isalnum() else "_" for ch in gate))
    sync(device)
    prep = time.perf_counter() - t
    tr.train(progress=False)                      # warm-up step
    for p in tr.params:                           # train() freezes the adapter when it returns
        p.requires_grad_(True)
    tr.settings.steps = 1 + steps
    sync(device)
    t = time.perf_counter()
    tr.train(progress=False)
    sync(device)
    out = {"gate": gate, "prepare_seconds": prep, "seconds_per_step": (time.perf_counter() - t) / steps,
           "steps_timed": steps, "tokens_per_step": tr.tokens_per_step(), "rows": _rows(concept),
           "peak_gib": _gpu_peak(device), "final_loss": tr.log[-1]["loss"]}
    detach_adapters(model)
    return out


def svare_check(model: InfinityModel, concept: ConceptSpec, batch: int, device: torch.device, steps: int) -> dict:
    """Seconds per S-VARE step (``train_svare`` times its step loop; the teacher sampling is reported apart)."""
    from sace.adapters import detach_adapters
    from sace.erasure.baselines import SVAREConfig, train_svare

    _reset_peak(device)
    t = time.perf_counter()
    res = train_svare(model, concept, SVAREConfig(steps=steps, batch_size=batch), progress=False,
                      name="check_svare")
    sync(device)
    out = {"batch": batch, "steps_timed": steps, "seconds_per_step": res.seconds / steps,
           "teacher_seconds": time.perf_counter() - t - res.seconds, "tokens_per_step": res.tokens_per_step,
           "trainable_params": sum(p.numel() for p in res.adapter.parameters()), "peak_gib": _gpu_peak(device)}
    detach_adapters(model)
    return out


def speed_checks(model: InfinityModel, plan: dict, device: torch.device, tiny: bool, deadline: float) -> dict:
    text_t = 8 if tiny else 32
    ct = model.transformer.cfg.text_channels
    warm, reps = (1, 1) if tiny else (1, 2)
    steps = 2 if tiny else 5
    n_params = sum(p.numel() for p in model.transformer.parameters())
    concept = check_concept(tiny)
    out: dict = {}
    for res, (pn, b_sample, b_svare) in plan.items():
        sch = infinity_schedule(1.0, pn)
        model.schedule = sch
        r: dict = {"pn": pn, "tokens": sch.num_tokens, "image_size": list(sch.image_size)}
        # the word-hash encoder gives one token per word: about 6 text tokens per prompt of CHECK_CONCEPT
        r["predicted"] = step_cost.predict(model.transformer.cfg, sch, n_params, sample_batch=b_sample,
                                           sace_rows=_rows(concept), early_scales=3,
                                           svare_batch=b_svare, text_tokens=text_t)
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
        for key, gate in (("sace_scale0", "scale0"), ("sace_early", "scales:0,1,2")):
            guarded(f"{res} {key}", key, lambda gate=gate: sace_check(model, concept, gate, device, steps), r,
                    deadline)
        guarded(f"{res} svare", "svare", lambda b=b_svare: svare_check(model, concept, b, device, 1), r, deadline)
        for key in ("sample", "sace_scale0", "sace_early", "svare"):
            sec = r.get(key, {}).get("seconds_per_step", r.get(key, {}).get("seconds"))
            if sec:
                r[key]["achieved_tflops"] = r["predicted"][key]["flops"] / sec / 1e12
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
    """sace.generate.generate on the model's device, batch 4 vs batches of 2 (same seeds, same PNGs)."""
    from sace.generate import generate

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
    q = lambda x: x.clamp(0, 1).mul(255).round().to(torch.uint8)  # what the PNG stores
    return {"pn": "0.06M", "seconds_batch4": secs, "max_abs_diff_batch4_vs_2": float((a - b).abs().max()),
            "png_pixels_differing": int((q(a) != q(b)).sum()), "png_pixels": int(q(a).numel())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="JSON report path")
    ap.add_argument("--tiny", action="store_true", help="tiny CPU configuration (also used without CUDA)")
    ap.add_argument("--depth", type=int, default=32, help="blocks of the speed model (Infinity-2B: 32)")
    ap.add_argument("--width", type=int, default=2048, help="width (Infinity-2B: 2048)")
    ap.add_argument("--heads", type=int, default=16, help="heads (Infinity-2B: 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip remaining checks after this many seconds")
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

    cfgs = configs(tiny, args)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    report["speed_dtype"] = str(dtype)
    report["config"] = {k: v.to_dict() for k, v in cfgs.items()} | {"seed": args.seed}
    sections: dict = {}
    if "speed" not in skip or "generate" not in skip:
        model = build_model(cfgs["speed"], cfgs["vae"], device, dtype, args.seed, infinity_schedule(1.0, "0.06M"))
        n_tr = sum(p.numel() for p in model.transformer.parameters())
        report["params"] = {"transformer": n_tr, "vae": sum(p.numel() for p in model.vae.parameters())}
        log(f"speed model: depth {cfgs['speed'].depth}, width {cfgs['speed'].embed_dim}: {n_tr / 1e6:.1f}M params")
        if "speed" not in skip:
            report["speed"] = speed_checks(model, TINY_PLAN if tiny else FULL_PLAN, device, tiny, deadline)
        if "generate" not in skip:
            guarded("generate", "generate", lambda: generate_check(model, tiny), sections, deadline)
        model = None  # free the GPU copy before the next checks
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "load" not in skip:
        def run_load():
            m = build_model(cfgs["load"], cfgs["small_vae"], device, dtype, args.seed, infinity_schedule(1.0, "0.06M"))
            return load_check(m, device)
        guarded("load", "load", run_load, sections, deadline)
    if "correctness" not in skip:
        torch.manual_seed(args.seed)
        small = InfinityTransformer(cfgs["small"])
        guarded("correctness", "correctness", lambda: correctness(small, cfgs["small_vae"], device, tiny), sections,
                deadline)
    report.update(sections)
    report["total_seconds"] = time.perf_counter() - T0
    write_json(args.out, report)
    log(f"wrote {args.out} ({report['total_seconds']:.0f} s)")
    fmt = lambda x, k, u: (f"{x[k]:.3g}{u}" if isinstance(x.get(k), (int, float)) else "n/a")  # noqa: E731
    for res, r in report.get("speed", {}).items():
        pr = r["predicted"]
        print(f"{res}: sampling {fmt(r.get('sample', {}), 'images_per_s', ' img/s')} "
              f"(predicted {pr['sample']['images_per_s']:.3g}), peak {fmt(r.get('sample', {}), 'peak_gib', ' GiB')} "
              f"(predicted {pr['sample']['memory_gib']:.3g})")
        for key in ("sace_scale0", "sace_early", "svare"):
            x = r.get(key, {})
            print(f"  {key}: {fmt(x, 'seconds_per_step', ' s/step')} (predicted {pr[key]['seconds']:.3g}), "
                  f"peak {fmt(x, 'peak_gib', ' GiB')} (predicted {pr[key]['memory_gib']:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
