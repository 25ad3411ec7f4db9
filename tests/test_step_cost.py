"""The per-step formulas of benchmarks/step_cost.py against independent estimates of reference-models.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import step_cost  # noqa: E402
from sace.models.registry import builtin_specs  # noqa: E402


def test_infinity_2b_sampling_flops_and_kv_cache_match_the_reference_estimates():
    spec = builtin_specs()["infinity-2b"]
    cfg, sch = spec.transformer, spec.schedule
    # reference-models.md 1.4: "~115 TFLOP per image" at 1024^2 with guidance, KV cache ~8 GB per image
    per_image = step_cost.forward_flops(cfg, sch, rows=2, text_tokens=32)
    assert 100e12 < per_image < 130e12
    assert 7.0 < step_cost.kv_cache_gib(cfg, sch, 1) < 9.0
    p = step_cost.block_params(cfg)
    assert abs(p["blocks"] - 2.149e9) / 2.149e9 < 0.01     # "blocks 2.149 B" (reference-models.md 1.2)


def test_predictions_scale_with_the_work():
    spec = builtin_specs()["infinity-2b"]
    n = spec.num_params()["transformer"]
    a = step_cost.predict(spec.transformer, spec.schedule, n, sample_batch=4, sace_rows=24, early_scales=3,
                          svare_batch=1)
    b = step_cost.predict(spec.transformer, spec.schedule, n, sample_batch=8, sace_rows=48, early_scales=3,
                          svare_batch=2)
    assert abs(b["sample"]["flops"] / a["sample"]["flops"] - 2) < 1e-9
    assert abs(b["svare"]["flops"] / a["svare"]["flops"] - 2) < 1e-9
    assert a["sace_scale0"]["flops"] < a["sace_early"]["flops"] < a["svare"]["flops"]
    assert a["weights_gib"] < a["sace_scale0"]["memory_gib"] < a["svare"]["memory_gib"]
