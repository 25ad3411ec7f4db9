"""Unit tests of the Infinity core: RoPE positions, patchify, per-scale conditions, scale-0 cost,
checkpoint errors."""

from __future__ import annotations

import pytest
import torch

from sace.errors import CheckpointError, SaceError
from sace.models.base import Condition
from sace.models.infinity.checkpoint import load_into, read_state_dict, transformer_key_map
from sace.models.infinity.schedules import infinity_schedule
from sace.models.infinity.transformer import InfinityTransformer, rope_table
from sace.models.infinity.vae import patchify_bits, unpatchify_bits
from sace.sampling import filter_top_k_top_p, make_generators, sample

from ...conftest import FIXTURES
from ...helpers import random_adapter as _random_adapter
from ...helpers import text_condition as _cond


def test_rope_positions_mode2():
    s = infinity_schedule(1.0, "0.06M")
    cos, sin = rope_table(s, head_dim=32)
    assert cos.shape == (521, 16)
    # angles = [row * f, col * f]; f_0 = 1. Token 0 (scale 0) sits at the origin.
    ang = torch.atan2(sin, cos)
    assert torch.allclose(ang[0], torch.zeros(16))
    # scale 1 is 2x2 on a 64x64 rope grid: rows/cols 0 and 32; with f_0 = 1 rad the angle is wrapped
    rows = torch.tensor([0, 0, 32, 32], dtype=torch.float)
    cols = torch.tensor([0, 32, 0, 32], dtype=torch.float)
    assert torch.allclose(cos[1:5, 0], torch.cos(rows), atol=1e-6)
    assert torch.allclose(cos[1:5, 8], torch.cos(cols), atol=1e-6)
    # scale 6 of 0.06M is 16x16 -> positions are multiples of 4 of the 1M grid
    off = s.offsets[6]
    assert torch.allclose(cos[off + 1, 8], torch.cos(torch.tensor(4.0)), atol=1e-6)
    assert torch.allclose(cos[off + 16, 0], torch.cos(torch.tensor(4.0)), atol=1e-6)


def test_patchify_round_trip():
    g = torch.Generator().manual_seed(1)
    bits = torch.randint(0, 2, (2, 8, 6, 14), generator=g)
    tok = patchify_bits(bits, 2)
    assert tok.shape == (2, 4, 3, 56)
    assert torch.equal(unpatchify_bits(tok, 2), bits)
    # token channel c*4 + dy*2 + dx holds latent channel c at (2y+dy, 2x+dx)
    assert tok[0, 1, 2, 5 * 4 + 1 * 2 + 0] == bits[0, 3, 4, 5]


@torch.no_grad()
def test_per_scale_condition_swap_leaves_earlier_scales(tiny_model, golden):
    g = golden["golden_fp32"]
    a, b = _cond(seed=1), _cond(seed=2)
    tf = g["x_BLC_wo_prefix"]
    base = tiny_model.forward_teacher_forced(a, tf, guidance=3.0)
    for k in (1, 3, 6):
        conds = [a] * k + [b] * (7 - k)
        swapped = tiny_model.forward_teacher_forced(conds, tf, guidance=3.0)
        for j in range(7):
            if j < k:  # equal up to float reassociation (the segments of the pass differ)
                assert torch.allclose(swapped[j], base[j], atol=1e-5), (k, j)
            else:
                assert not torch.allclose(swapped[j], base[j]), (k, j)
    # all-b per-scale list equals the plain b forward
    allb = tiny_model.forward_teacher_forced([b] * 7, tf, guidance=3.0)
    plain = tiny_model.forward_teacher_forced(b, tf, guidance=3.0)
    for j in range(7):
        assert torch.allclose(allb[j], plain[j], atol=1e-6)


@torch.no_grad()
def test_sampling_swap_leaves_earlier_scales_bit_identical(tiny_model):
    a, b = _cond(1, seed=3), _cond(1, seed=4)
    ref = sample(tiny_model, a, generator=make_generators([7]), decode=False)
    for k in (1, 4):
        res = sample(tiny_model, [a] * k + [b] * (7 - k), generator=make_generators([7]), decode=False)
        assert res.pyramid.equal(ref.pyramid, upto=k)
        assert not res.pyramid.equal(ref.pyramid)


@torch.no_grad()
def test_scale0_forward_is_one_token(tiny_model):
    calls = []
    h = tiny_model.transformer.blocks[0].sa.mat_qkv.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    try:
        out = tiny_model.forward_teacher_forced(_cond(3), None, scales=[0], guidance=3.0)
    finally:
        h.remove()
    assert calls == [torch.Size([6, 1, 64])]  # 3 prompts x (cond, null), one token each
    assert len(out.per_scale) == 1 and out[0].shape == (3, 1, 16, 2)


@torch.no_grad()
def test_per_row_generators_are_batch_invariant(tiny_model):
    c = _cond(3, seed=5)
    batch = sample(tiny_model, c, generator=make_generators([1, 2, 3]), decode=False)
    single = sample(tiny_model, c.index([1]), generator=make_generators([2]), decode=False)
    assert single.pyramid.equal(batch.pyramid.index([1]))


def test_top_k_top_p_filter():
    z = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    out = filter_top_k_top_p(z, top_k=900, top_p=0.97)
    # p(minority) = 0.0067 <= 0.03 is removed; 0.27 is kept
    assert torch.isinf(out[0, 0]) and out[0, 1] == 5.0 and torch.isfinite(out[1]).all()
    assert torch.equal(filter_top_k_top_p(z, top_k=1)[:, 0], torch.tensor([float("-inf")] * 2))


def test_empty_condition_and_prompt_errors(tiny_model):
    with pytest.raises(SaceError, match="no tokens"):
        Condition(torch.zeros(1, 3, 256), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(SaceError, match="no text encoder"):
        tiny_model.encode_prompts(["a cat"])
    with pytest.raises(SaceError, match="empty"):
        tiny_model.encode_prompts([" "])
    with pytest.raises(SaceError, match="channels"):
        tiny_model.forward_teacher_forced(Condition(torch.zeros(1, 2, 8), torch.ones(1, 2, dtype=bool)), None,
                                          scales=[0])


def test_wrong_and_truncated_checkpoint(tmp_path, tiny_model):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(FIXTURES / "infinity_tiny_state_dict.safetensors"))
    cfg = tiny_model.transformer.cfg
    # a missing key and an unexpected key are both listed
    bad = dict(sd)
    bad.pop("head.weight")
    bad["foo.bar"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_into(InfinityTransformer(cfg), read_state_dict(tmp_path / "bad.safetensors"),
                  transformer_key_map(cfg.depth, cfg.block_chunks))
    assert "head.weight" in str(e.value) and "foo.bar" in str(e.value)
    # a truncated file
    raw = (FIXTURES / "infinity_tiny_state_dict.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        list(read_state_dict(tmp_path / "trunc.safetensors"))
    # a checkpoint of another size: shape mismatches are listed
    from sace.models.infinity.transformer import InfinityConfig
    other = InfinityTransformer(InfinityConfig(depth=2, embed_dim=128, num_heads=2, text_channels=256,
                                               codebook_dim=16, block_chunks=2))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_into(other, read_state_dict(FIXTURES / "infinity_tiny_state_dict.safetensors"),
                  transformer_key_map(2, 2))


def test_torch_pth_container_and_plain_vae_keys(tmp_path, tiny_model):
    """`{'vae': ...}` containers with plain (unwrapped) key names load into the wrapped modules."""
    from sace.models.infinity.checkpoint import vae_key_map
    from sace.models.infinity.vae import BSQVAE

    sd = tiny_model.vae.state_dict()
    plain = {k.replace(".conv.weight", ".weight").replace(".conv.bias", ".bias")
             .replace(".norm.weight", ".weight").replace(".norm.bias", ".bias"): v for k, v in sd.items()}
    torch.save({"vae": plain}, tmp_path / "vae.pth")
    vae = BSQVAE(tiny_model.vae.cfg)
    load_into(vae, read_state_dict(tmp_path / "vae.pth"), vae_key_map(vae))
    for k, v in vae.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # a pickle with arbitrary objects is refused (weights_only)
    torch.save({"vae": plain, "obj": object()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        list(read_state_dict(tmp_path / "evil.pth"))


@torch.no_grad()
def test_fork_equals_independent_runs(tiny_model):
    """Forking rows mid-pass (shared KV prefix) gives the same bits as running each variant alone."""
    a, b = _cond(1, seed=8), _cond(1, seed=9)
    k = 3
    # after the fork row 0 stays on a; row 1 switches to b from scale k on
    per_scale = [Condition.cat([a, a if s < k else b]) for s in range(7)]
    res = sample(tiny_model, a, generator=make_generators([11]), decode=True,
                 fork={k: (torch.tensor([0, 0]), per_scale, None)})
    ref_a = sample(tiny_model, a, generator=make_generators([11]), decode=True)
    ref_b = sample(tiny_model, [a] * k + [b] * (7 - k), generator=make_generators([11]), decode=True)
    assert res.pyramid.batch_size == 2
    assert res.pyramid.index([0]).equal(ref_a.pyramid)
    assert res.pyramid.index([1]).equal(ref_b.pyramid)
    assert torch.allclose(res.images[1], ref_b.images[0], atol=1e-4)
    assert res.logits[0].shape[0] == 2 and torch.equal(res.logits[0][0], res.logits[0][1])


@torch.no_grad()
def test_strict_gated_adapter_leaves_later_scales_unchanged(tiny_model, golden):
    """With the scale-0 token forced equal, a strictly gated adapter changes only the scale-0 logits."""
    from sace.adapters import detach_adapters

    g = golden["golden_fp32"]
    c, tf = _cond(2, seed=3), g["x_BLC_wo_prefix"]
    base = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
    _random_adapter(tiny_model, "strict")
    try:
        ad = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
        assert not torch.allclose(ad[0], base[0], atol=1e-3)          # the edit acts on scale 0
        for k in range(1, 7):
            assert torch.allclose(ad[k], base[k], atol=1e-5), k       # and nowhere else
    finally:
        detach_adapters(tiny_model)
    # sampling: force the base model's scale-0 bits -> every later scale is bit-identical
    ref = sample(tiny_model, c, generator=make_generators([1, 2]), decode=False)
    _random_adapter(tiny_model, "strict")
    try:
        forced = sample(tiny_model, c, generator=make_generators([1, 2]), decode=False, prefix=ref.pyramid.prefix(1))
        assert forced.pyramid.equal(ref.pyramid)
        for k in range(1, 7):
            assert torch.allclose(forced.logits[k], ref.logits[k], atol=1e-5)
    finally:
        detach_adapters(tiny_model)


@torch.no_grad()
def test_context_and_shared_adapters_reach_later_scales(tiny_model, golden):
    from sace.adapters import detach_adapters

    g = golden["golden_fp32"]
    c, tf = _cond(2, seed=3), g["x_BLC_wo_prefix"]
    base = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
    for iso, gate in (("context", "scale0"), ("context", "shared")):
        _random_adapter(tiny_model, iso, gate=gate)
        try:
            ad = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
            assert not torch.allclose(ad[3], base[3], atol=1e-4), (iso, gate)
        finally:
            detach_adapters(tiny_model)
    after = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
    assert all(torch.equal(a, b) for a, b in zip(after.per_scale, base.per_scale))  # detaching restores
