"""Adapter artifacts: bit-exact round trip through disk, clear errors for corrupt or mismatched files."""

from __future__ import annotations

import json

import pytest
import torch

from sace.adapters import detach_adapters, load_adapter, load_adapters, save_adapter
from sace.errors import CheckpointError, SaceError
from tests.helpers import save_detached

from .helpers import random_adapter as _random_adapter
from .helpers import text_condition as _cond


def _random(model, name="rt", seed=0):
    return _random_adapter(model, seed=seed, name=name, modules=["cross_attn_q", "cross_attn_kv", "ffn"])


@torch.no_grad()
def test_adapter_round_trip_is_bit_exact(tiny_model, golden, tmp_path):
    c, tf = _cond(2, seed=5), golden["golden_fp32"]["x_BLC_wo_prefix"]
    ad = _random(tiny_model)
    try:
        before_sd = {k: v.clone() for k, v in ad.state_dict().items()}
        before = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
        save_adapter(ad, tmp_path / "a", model=tiny_model, extra={"note": "test"})
    finally:
        detach_adapters(tiny_model)
    meta = json.loads((tmp_path / "a" / "adapter.json").read_text())
    assert meta["format"] == "sace.adapter.v1" and meta["note"] == "test" and meta["num_params"] > 0
    loaded = load_adapter(tiny_model, tmp_path / "a")
    try:
        sd = loaded.state_dict()
        assert sd.keys() == before_sd.keys()
        assert all(torch.equal(sd[k], before_sd[k]) for k in sd)
        after = tiny_model.forward_teacher_forced(c, tf, guidance=3.0)
        assert all(torch.equal(a, b) for a, b in zip(after.per_scale, before.per_scale))
    finally:
        detach_adapters(tiny_model)


def test_composing_the_same_adapter_twice_renames(tiny_model, tmp_path):
    save_detached(_random(tiny_model, name="dup"), tmp_path / "d", tiny_model)
    try:
        ads = load_adapters(tiny_model, [tmp_path / "d", tmp_path / "d"])
        assert [a.config.name for a in ads] == ["dup", "dup_1"]
    finally:
        detach_adapters(tiny_model)


def test_corrupt_or_missing_adapter_files_raise_clear_errors(tiny_model, tmp_path):
    save_detached(_random(tiny_model, name="bad"), tmp_path / "ok", tiny_model)
    with pytest.raises(SaceError, match="adapter folder not found"):
        load_adapter(tiny_model, tmp_path / "nope")
    # truncated tensor file
    f = tmp_path / "ok" / "adapter.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_adapter(tiny_model, tmp_path / "ok")
    from sace.adapters import adapter_names
    assert adapter_names(tiny_model) == []
    # garbage metadata
    (tmp_path / "ok" / "adapter.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_adapter(tiny_model, tmp_path / "ok")
    # adapter trained on another model
    save_detached(_random(tiny_model, name="other"), tmp_path / "o", tiny_model, record_model=False,
                  extra={"base_model": "fashion"})
    with pytest.raises(SaceError, match="trained on model 'fashion'"):
        load_adapter(tiny_model, tmp_path / "o")


def test_nan_adapter_values_are_rejected(tiny_model, tmp_path):
    ad = _random(tiny_model, name="nan")
    with torch.no_grad():
        ad.parameters()[0].fill_(float("nan"))
    save_detached(ad, tmp_path / "n", tiny_model)
    with pytest.raises(CheckpointError, match="NaN"):
        load_adapter(tiny_model, tmp_path / "n")
    from sace.adapters import adapter_names
    assert adapter_names(tiny_model) == []
