"""Adapter state is owned by the model and switched in scopes: nothing is left behind after a call, even
when the call raises."""

from __future__ import annotations

import pytest
import torch

from sace.adapters import adapter_names, adapter_set, detach_adapters

from .helpers import random_adapter as _random_adapter
from .helpers import text_condition as _cond


def _gate(model):
    g = model.transformer.gate
    return g.token_scale_ids, g.text_scale


def _active(model):
    return {(n, i): br.active for i, m in enumerate(adapter_set(model).layers()) for n, br in m.branches.items()}


@torch.no_grad()
def test_scopes_restore_gate_and_adapter_states(tiny_model):
    c = _cond(2, seed=1)
    plain = tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0]
    assert tiny_model.transformer.adapter_set is None
    _random_adapter(tiny_model, "strict", name="a")
    _random_adapter(tiny_model, "context", gate="shared", seed=1, name="b")
    try:
        aset = adapter_set(tiny_model)
        assert aset.names() == ["a", "b"] and aset.strict()
        states = _active(tiny_model)
        both = tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0]
        assert _gate(tiny_model) == (None, None) and _active(tiny_model) == states
        with aset.disabled():
            assert not aset.strict() and aset.signature(0) == ()
            assert torch.equal(tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0], plain)
        with aset.only(["b"]):
            assert not aset.strict() and aset.signature(3) == ("b",)
            only_b = tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0]
        assert _active(tiny_model) == states and aset.signature(0) == ("a", "b")
        assert not torch.equal(only_b, plain) and not torch.equal(only_b, both)
        # a call that fails half-way (in a block, inside a scope) leaves no routing and no switched adapter behind
        def boom(*_):
            raise RuntimeError("boom")
        h = tiny_model.transformer.blocks[1].ffn.register_forward_hook(boom)
        try:
            with pytest.raises(RuntimeError, match="boom"):
                with aset.only(["a"]):
                    tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)
        finally:
            h.remove()
        assert _gate(tiny_model) == (None, None) and _active(tiny_model) == states
        assert torch.equal(tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0], both)
    finally:
        detach_adapters(tiny_model)
    assert adapter_names(tiny_model) == [] and tiny_model.transformer.adapter_set is None
    assert torch.equal(tiny_model.forward_teacher_forced(c, None, scales=[0], guidance=3.0)[0], plain)
