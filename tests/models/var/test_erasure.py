"""The erasure methods and ISSA run unchanged on the class-conditional VAR family (tiny parity model, random
weights: these tests check that the shared code computes the right things on index tokens, not image quality)."""

from __future__ import annotations

import pytest
import torch

from sace.adapters import detach_adapters
from sace.concepts.spec import from_prompts
from sace.erasure.sace import default_sace_config, erase
from sace.models.registry import load_model


@pytest.fixture(scope="module")
def var_tiny():
    return load_model("var-tiny-fixture")


@torch.no_grad()
def _scale0(model, prompt):
    return model.forward_teacher_forced(model.encode_prompts([prompt]), None, scales=[0], guidance=5.0)[0]


def test_sace_scale0_moves_the_class_to_its_anchor_and_keeps_the_others(var_tiny):
    kind = var_tiny.token_kind
    retain = ["tench", "goldfish", "great white shark"]
    # a caption target brings an entangled context prompt ("a photo"), which names no class: SACE leaves
    # it out of P on a class-conditional model (the null class is already there)
    concept = from_prompts("golden retriever", ["golden retriever", "a photo of a golden retriever"], "volcano",
                           retain=retain)
    assert concept.entangled == ["a photo"] and "a photo" not in concept.preservation_prompts(False)
    before = {p: _scale0(var_tiny, p) for p in ["golden retriever", "volcano", *retain]}
    cfg = default_sace_config(var_tiny, gate="scale0", steps=10, lr=1e-2, checkpoint_every=100)
    assert cfg.modules == ["adaln", "ffn", "head_adaln"]          # the VAR family's adapter groups
    try:
        res = erase(var_tiny, concept, cfg, progress=False)
        after = {p: _scale0(var_tiny, p) for p in before}
        # later scales of the target still run (a full teacher-forced pass over index tokens)
        assert res.log[-1]["L_ER"] < res.log[0]["L_ER"]
    finally:
        detach_adapters(var_tiny)
    gap0 = kind.kl(before["golden retriever"], before["volcano"]).item()
    gap1 = kind.kl(after["golden retriever"], before["volcano"]).item()
    assert gap0 > 1.0 and gap1 < 0.2 * gap0                        # measured 2.55 -> 0.095 nats
    for p in ["volcano", *retain]:
        assert kind.kl(after[p], before[p]).item() < 0.3            # measured <= 0.15
    # detached: the original model again
    assert torch.equal(_scale0(var_tiny, "golden retriever"), before["golden retriever"])


def test_issa_swaps_the_class_per_scale(var_tiny):
    from sace.issa import issa

    # a real, model-independent score of the images (the tiny model is random): the mean red intensity
    res = issa(var_tiny, ["golden retriever"], ["volcano"], [0], lambda im: im[:, 0].mean((1, 2)))
    div = res.divergence()
    assert len(div["mean_js"]) == var_tiny.schedule.num_scales
    assert all(0 < v <= 0.6932 for v in div["mean_js"])          # categorical JS in (0, ln 2]
    assert abs(sum(div["share"]) - 1) < 1e-6
    k = var_tiny.schedule.num_scales
    assert res.A[0, 0, 0] == res.B[0, 0, k] and res.A[0, 0, k] == res.B[0, 0, 0]   # the two trunks


@torch.no_grad()
def test_per_scale_class_swap_leaves_earlier_scales_unchanged(var_tiny):
    """ISSA's swap at scale s: scales < s see only the first class (block-causal), scales >= s the second."""
    from sace.sampling import make_generators, sample

    c_star, c = var_tiny.encode_prompts(["golden retriever"]), var_tiny.encode_prompts(["volcano"])
    k_all, s = var_tiny.schedule.num_scales, 3
    pyr = sample(var_tiny, c_star, generator=make_generators([0]), decode=False).pyramid
    tf = var_tiny.tf_inputs(pyr)
    full = var_tiny.forward_teacher_forced(c_star, tf, guidance=5.0)
    swapped = var_tiny.forward_teacher_forced([c_star] * s + [c] * (k_all - s), tf, guidance=5.0)
    anchor = var_tiny.forward_teacher_forced(c, tf, guidance=5.0)
    for k in range(k_all):
        if k < s:
            torch.testing.assert_close(swapped[k], full[k], rtol=0, atol=1e-5)
        else:
            assert (swapped[k] - full[k]).abs().max() > 1e-2
            assert (swapped[k] - anchor[k]).abs().max() > 1e-3       # the SOS (scale 0) is still c*'s
