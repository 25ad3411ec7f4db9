"""Predicted GPU memory and time per step of the real-model path (formulas; nothing is measured here).

``gpu_check.py`` prints these predictions next to its measurements, so that a run on real hardware tells
how far the formulas are off; the README's table for Infinity-2B comes from ``python benchmarks/step_cost.py``.

Notation: L blocks, width C, text width C_t, MLP hidden H, P_blk the parameters of the blocks (per block
``4C^2`` self-attention + ``2C^2`` cross-attention q/out + ``2C^2`` cross-attention kv on text projected to C
+ ``2CH`` FFN + ada-LN), N image tokens of a schedule, n_k and o_k the tokens of scale k and before it, T text
tokens per prompt, B prompts, CFG doubling every sampled or guided row.

* weights: ``2 P`` bytes in bf16 (the VAE ``4 P_vae`` in float32).
* KV cache of sampling (reference-models.md §1.4): ``2 (CFG) B N L C (4 + 2)`` bytes -- K in float32 after
  RoPE, V in bf16.
* forward FLOPs of a teacher-forced or sampling pass over image tokens with block-causal attention:
  ``F = 2 B' (N P_img + T P_kv) + 4 B' L C sum_k n_k (o_k + n_k) + 4 B' L C N T`` with ``B' = 2B`` under
  guidance; P_img = P_blk minus the cross-attention kv weights P_kv, which see the T text tokens.
* a training step: forward + backward ``~ 3 F`` (the backward of a frozen base still propagates activation
  gradients: ~2 F; adapter weight gradients are small) -- S-VARE runs two such passes per step.
* activations kept for the backward (bf16, flash attention, Korthikanti et al. 2022 without the s^2 term):
  ``B' L C (34 N_t + 4 T)`` bytes for N_t image tokens per row (the text tokens only keep their projected
  cross-attention keys and values).
* optimiser state of the trainable parameters P_tr (float32 weights, grads, two AdamW moments): ``16 P_tr``.
* time = FLOPs / (efficiency x peak); peak bf16 dense of an H200 989 TFLOP/s, efficiency assumed 0.35 for
  these mid-size matmuls (a guess that gpu_check's ``achieved_tflops`` corrects).
"""

from __future__ import annotations

import argparse
import json

H200_BF16_TFLOPS = 989.0
EFFICIENCY = 0.35
GIB = 2**30


def block_params(cfg) -> dict[str, int]:
    """Parameter counts of the transformer blocks of an InfinityConfig: total, the cross-attention kv part
    (which multiplies text tokens) and the rest (which multiplies image tokens)."""
    c, h, l_ = cfg.embed_dim, cfg.mlp_hidden, cfg.depth
    kv = 2 * c * c
    per = 4 * c * c + 2 * c * c + kv + 2 * c * h + 6 * c
    return {"blocks": l_ * per, "kv": l_ * kv, "image": l_ * (per - kv)}


def forward_flops(cfg, schedule, rows: int, text_tokens: int, scales: list[int] | None = None) -> float:
    """FLOPs of one forward over ``rows`` sequences (CFG rows counted by the caller) restricted to ``scales``
    (default: all), with block-causal attention to every earlier scale."""
    p = block_params(cfg)
    ks = list(range(schedule.num_scales)) if scales is None else list(scales)
    n = sum(schedule.offsets[k + 1] - schedule.offsets[k] for k in ks)
    attn = sum((schedule.offsets[k + 1] - schedule.offsets[k]) * schedule.offsets[k + 1] for k in ks)
    c, l_ = cfg.embed_dim, cfg.depth
    return rows * (2 * (n * p["image"] + text_tokens * p["kv"]) + 4 * l_ * c * attn + 4 * l_ * c * n * text_tokens)


def kv_cache_gib(cfg, schedule, batch: int) -> float:
    return 2 * batch * schedule.num_tokens * cfg.depth * cfg.embed_dim * 6 / GIB


def predict(cfg, schedule, n_params: int, *, sample_batch: int, sace_rows: int, early_scales: int,
            svare_batch: int, text_tokens: int = 32, trainable_svare: int | None = None,
            peak_tflops: float = H200_BF16_TFLOPS, efficiency: float = EFFICIENCY) -> dict:
    """Predicted memory (GiB) and seconds of: sampling ``sample_batch`` images, one SACE step with the
    scale-0 gate over ``sace_rows`` guided rows (cond + null, one token each), one step with an early-scale
    gate over scales ``0..early_scales-1``, and one S-VARE step of batch ``svare_batch`` (two full
    teacher-forced passes, a dense adapter of ``trainable_svare`` parameters: default the FFN and
    cross-attention weights)."""
    w = 2 * n_params / GIB
    rate = peak_tflops * 1e12 * efficiency
    c, l_ = cfg.embed_dim, cfg.depth
    f_sample = forward_flops(cfg, schedule, 2 * sample_batch, text_tokens)
    f_s0 = 3 * forward_flops(cfg, schedule, sace_rows, text_tokens, [0])
    f_early = 3 * forward_flops(cfg, schedule, sace_rows, text_tokens, list(range(early_scales)))
    f_svare = 2 * 3 * forward_flops(cfg, schedule, svare_batch, text_tokens)
    if trainable_svare is None:
        trainable_svare = l_ * (4 * c * c + 2 * c * cfg.mlp_hidden)
    early = schedule.offsets[early_scales]
    act = lambda rows, tokens: rows * l_ * c * (34 * tokens + 4 * text_tokens) / GIB  # noqa: E731
    return {
        "assumptions": {"peak_tflops": peak_tflops, "efficiency": efficiency, "text_tokens": text_tokens},
        "weights_gib": w,
        "sample": {"batch": sample_batch, "flops": f_sample, "seconds": f_sample / rate,
                   "images_per_s": sample_batch / (f_sample / rate),
                   "memory_gib": w + kv_cache_gib(cfg, schedule, sample_batch)},
        "sace_scale0": {"rows": sace_rows, "flops": f_s0, "seconds": f_s0 / rate,
                        "memory_gib": w + act(sace_rows, 1)},
        "sace_early": {"rows": sace_rows, "tokens_per_row": early, "flops": f_early, "seconds": f_early / rate,
                       "memory_gib": w + act(sace_rows, early)},
        "svare": {"batch": svare_batch, "flops": f_svare, "seconds": f_svare / rate,
                  "trainable_params": trainable_svare,
                  "memory_gib": w + 16 * trainable_svare / GIB + act(svare_batch, schedule.num_tokens)},
    }


def main(argv=None) -> int:
    from sace.models.registry import builtin_specs

    ap = argparse.ArgumentParser(description="Predicted memory/time per step (formulas of this module's docstring)")
    ap.add_argument("--model", default="infinity-2b")
    ap.add_argument("--sample-batch", type=int, default=4)
    ap.add_argument("--sace-rows", type=int, default=2 * (32 + 77), help="guided rows of a SACE step "
                    "(2 x (targets + preservation prompts); the nudity preset: 32 targets, 77 P prompts)")
    ap.add_argument("--svare-batch", type=int, default=1)
    ap.add_argument("--efficiency", type=float, default=EFFICIENCY)
    args = ap.parse_args(argv)
    spec = builtin_specs()[args.model]
    n = spec.num_params()["transformer"]
    out = predict(spec.transformer, spec.schedule, n, sample_batch=args.sample_batch, sace_rows=args.sace_rows,
                  early_scales=3, svare_batch=args.svare_batch, efficiency=args.efficiency)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
