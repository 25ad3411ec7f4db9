"""Token-kind math on its own, for both kinds (bit tokens: Infinity; index tokens: VAR), against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from sace.errors import SaceError
from sace.models.tokens import BitTokens, IndexTokens, bernoulli_js

KINDS = {"bits": (BitTokens(3), (2, 5, 3, 2)), "index": (IndexTokens(7), (2, 5, 7))}


@pytest.fixture(params=sorted(KINDS))
def kind_and_logits(request):
    kind, shape = KINDS[request.param]
    g = torch.Generator().manual_seed(0)
    return kind, torch.randn(shape, generator=g) * 2, torch.randn(shape, generator=g) * 2


def test_closed_forms(kind_and_logits):
    kind, a, b = kind_and_logits
    f = max(1, math.prod(kind.factor_axes))
    pa, pb = a.softmax(-1), b.softmax(-1)
    kind.check_logits(a)
    assert kind.logits_shape(2, 5) == tuple(a.shape)
    torch.testing.assert_close(kind.entropy(a).reshape(2, 5, f), -(pa * pa.log()).sum(-1).reshape(2, 5, f))
    torch.testing.assert_close(kind.kl(a, b).reshape(2, 5, f), (pa * (pa.log() - pb.log())).sum(-1).reshape(2, 5, f))
    m = (pa + pb) / 2
    js = 0.5 * (pa * (pa / m).log()).sum(-1) + 0.5 * (pb * (pb / m).log()).sum(-1)
    torch.testing.assert_close(kind.js(a, b).reshape(2, 5, f), js.reshape(2, 5, f), atol=1e-6, rtol=1e-5)
    tok = kind.argmax(b)
    assert tok.shape == a.shape[:-1]
    torch.testing.assert_close(kind.log_prob(a, tok).reshape(2, 5, f),
                               pa.log().gather(-1, tok.unsqueeze(-1)).reshape(2, 5, f))
    assert float(kind.flips(tok, kind.argmax(a)).sum()) == float((tok != kind.argmax(a)).sum())
    grid = kind.grid(tok, 1, 5)
    assert grid.shape == (2, 1, 5, *kind.factor_axes) and torch.equal(kind.flat(grid), tok)
    with pytest.raises(SaceError, match="tokens need"):
        kind.check_logits(a[..., :1])


def test_sampling_uses_the_generator_like_the_reference(kind_and_logits):
    kind, a, _ = kind_and_logits
    one = kind.sample(a, 0, 0.0, torch.Generator().manual_seed(3))
    assert torch.equal(one, kind.sample(a, 0, 0.0, torch.Generator().manual_seed(3)))
    # one multinomial over (rows * tokens * factors, V), exactly as Infinity's sampler draws
    ref = torch.multinomial(a.reshape(-1, a.shape[-1]).softmax(-1), 1, replacement=True,
                            generator=torch.Generator().manual_seed(3)).view(one.shape)
    assert torch.equal(one, ref)
    rows = kind.sample(a, 0, 0.0, [torch.Generator().manual_seed(s) for s in (1, 2)])
    assert torch.equal(rows[1:], kind.sample(a[1:], 0, 0.0, [torch.Generator().manual_seed(2)]))
    assert torch.equal(kind.sample(a, 1, 0.0, None), kind.argmax(a))     # top-k = 1 is the argmax
    with pytest.raises(SaceError, match="generators for a batch"):
        kind.sample(a, 0, 0.0, [torch.Generator()])


def test_bernoulli_js_edges():
    p = torch.tensor([0.0, 1.0, 0.5, 0.2])
    q = torch.tensor([1.0, 0.0, 0.5, 0.2])
    assert torch.allclose(bernoulli_js(p, q), torch.tensor([math.log(2), math.log(2), 0.0, 0.0]))
    with pytest.raises(SaceError):
        IndexTokens(1)
    with pytest.raises(SaceError):
        BitTokens(0)
