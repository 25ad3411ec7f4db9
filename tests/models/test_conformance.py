"""Conformance battery every model family must pass (DESIGN.md "The model interface").

Table-driven over families (peft's ``tests/test_custom_models.py`` style): a new family adds one row to
``FAMILIES`` -- a registry name and a function making a batch of conditions -- and must pass every test.
"""

from __future__ import annotations

import math

import pytest
import torch

from sace.models.base import Condition, ScaleWiseModel
from sace.sampling import make_generators, sample


def _text_conditions(model, n: int, seed: int) -> Condition:
    """Random text-encoder states (the tiny fixture ships no text encoder)."""
    g = torch.Generator().manual_seed(seed)
    c = model.transformer.cfg.text_channels
    lengths = [3 + (i % 3) for i in range(n)]
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return Condition(torch.randn(n, max(lengths), c, generator=g) * mask[..., None], mask)


#: family row: registry name -> conditions(model, n, seed)
FAMILIES = {"infinity-tiny-fixture": _text_conditions}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    from sace.models.registry import load_model

    return load_model(request.param), FAMILIES[request.param]


def test_protocol_members(family):
    model, _ = family
    assert isinstance(model, ScaleWiseModel)
    assert set(model.text_stream_groups) <= set(model.module_groups)
    for key in ("guidance", "temperature", "top_k", "top_p"):
        assert key in model.defaults


@torch.no_grad()
def test_tokenize_decode_and_teacher_forced_shapes(family):
    model, conds = family
    sch, kind = model.schedule, model.token_kind
    h, w = sch.image_size
    images = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pyr, tf = model.tokenize(images)
    assert pyr.num_scales == sch.num_scales and tf.shape[:2] == (2, sch.num_tokens - sch.sizes[0])
    for k, (hk, wk) in enumerate(sch.grids):
        assert pyr.tokens[k].shape == (2, hk, wk, *kind.factor_axes)
        assert int(pyr.tokens[k].min()) >= 0 and int(pyr.tokens[k].max()) < kind.num_classes
    torch.testing.assert_close(model.tf_inputs(pyr, mode="training"), tf, rtol=1e-5, atol=1e-5)
    out = model.decode(pyr)
    assert out.shape == (2, 3, h, w) and float(out.min()) >= 0 and float(out.max()) <= 1
    z = model.forward_teacher_forced(conds(model, 2, 1), tf)
    assert z.num_scales == sch.num_scales
    for k, n in enumerate(sch.sizes):
        assert z[k].shape == kind.logits_shape(2, n)
        kind.check_logits(z[k])


@torch.no_grad()
def test_scale0_costs_one_token_per_prompt(family):
    model, conds = family
    pats = [p for g in ("ffn",) for p in model.module_groups[g]]
    import re

    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[:-1]))
             for name, m in model.transformer.named_modules()
             if isinstance(m, torch.nn.Linear) and any(re.fullmatch(p, name) for p in pats)]
    try:
        c = conds(model, 3, 2)
        s0 = model.forward_teacher_forced(c, None, scales=[0], guidance=2.0, temperature=0.7)
    finally:
        for hk in hooks:
            hk.remove()
    assert seen and all(math.prod(s) == 6 for s in seen)   # 3 prompts x (cond, null) x 1 token
    pyr = sample(model, c, generator=make_generators([0, 1, 2]), decode=False).pyramid
    full = model.forward_teacher_forced(c, model.tf_inputs(pyr), guidance=2.0, temperature=0.7)
    torch.testing.assert_close(s0[0], full[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_teacher_forced_logits_equal_sampler_logits(family):
    model, conds = family
    c = conds(model, 2, 3)
    res = sample(model, c, guidance=3.0, temperature=0.8, generator=make_generators([4, 5]), decode=False)
    tf = model.tf_inputs(res.pyramid, mode="sampling")
    z = model.forward_teacher_forced(c, tf, guidance=3.0, temperature=0.8)
    for k in range(model.schedule.num_scales):
        torch.testing.assert_close(z[k], res.logits[k], rtol=1e-4, atol=1e-4)
    lp = z.log_prob(res.pyramid)
    assert lp.shape == (2,) and bool((lp < 0).all())


@torch.no_grad()
def test_sampling_is_deterministic_per_seed(family):
    model, conds = family
    c = conds(model, 3, 6)
    a = sample(model, c, generator=make_generators([1, 2, 3]), decode=False).pyramid
    b = sample(model, c, generator=make_generators([1, 2, 3]), decode=False).pyramid
    other = sample(model, c, generator=make_generators([1, 2, 4]), decode=False).pyramid
    one = sample(model, c.index([1]), generator=make_generators([2]), decode=False).pyramid
    assert a.equal(b) and one.equal(a.index([1]))
    assert other.index([0, 1]).equal(a.index([0, 1])) and not other.index([2]).equal(a.index([2]))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert sample(model, c, generator=g1, decode=False).pyramid.equal(sample(model, c, generator=g2,
                                                                              decode=False).pyramid)


@torch.no_grad()
def test_token_kind_identities(family):
    model, conds = family
    kind = model.token_kind
    c = conds(model, 2, 7)
    z = model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0].float()   # (2, 1, *F, V)
    other = model.forward_teacher_forced(conds(model, 2, 8), None, scales=[0], guidance=3.0)[0].float()
    f = max(1, math.prod(kind.factor_axes))
    assert torch.equal(kind.kl(z, z), torch.zeros(2, 1, f))
    assert bool((kind.kl(z, other) > 0).all())
    assert torch.equal(kind.js(z, z), torch.zeros(2, 1, f))
    torch.testing.assert_close(kind.js(z, other), kind.js(other, z))
    assert bool((kind.js(z, other) <= math.log(2) + 1e-7).all())
    h = kind.entropy(z)
    assert h.shape == (2, 1, f) and bool((h >= 0).all()) and bool((h <= math.log(kind.num_classes) + 1e-6).all())
    uniform = torch.zeros_like(z)
    torch.testing.assert_close(kind.entropy(uniform), torch.full((2, 1, f), math.log(kind.num_classes)))
    best = kind.argmax(z)
    assert best.shape == (2, 1, *kind.factor_axes)
    # the argmax is at least as likely as any other value of each factor
    lp_best = kind.log_prob(z, best)
    for v in range(kind.num_classes):
        assert bool((kind.log_prob(z, torch.full_like(best, v)) <= lp_best).all())
    assert torch.equal(kind.flips(best, best), torch.zeros(2, 1, f))
    # top-k = 1 sampling is the argmax, whatever the generator
    assert torch.equal(kind.sample(z, 1, 0.0, torch.Generator().manual_seed(0)), best)
    assert torch.equal(kind.sample(z, 1, 0.0, make_generators([3, 4])), best)
    # independent draws follow the probabilities (4000 draws per factor)
    draws = kind.sample_independent(z, 4000, torch.Generator().manual_seed(1))
    freq = torch.stack([(draws == v).float().mean(0) for v in range(kind.num_classes)], -1)
    torch.testing.assert_close(freq, z.softmax(-1), atol=0.04, rtol=0)
