"""Sampling settings are resolved once, from the model's sampling defaults; model defaults are split into
sampling and per-method tables, and the older flat model.json layout still reads the same."""

from __future__ import annotations

import json

import pytest

from sace.errors import SaceError
from sace.models.base import split_defaults
from sace.sampling import SamplingSettings


def test_split_defaults_reads_both_layouts():
    flat = {"guidance": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 0.0, "sace": {"gate": "scale0"},
            "svare": {"lr": 0.001}}
    nested = {"sampling": {"guidance": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 0.0},
              "sace": {"gate": "scale0"}, "svare": {"lr": 0.001}}
    assert split_defaults(flat) == split_defaults(nested) == (
        {"guidance": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 0.0},
        {"sace": {"gate": "scale0"}, "svare": {"lr": 0.001}})
    assert split_defaults(None) == ({}, {})
    with pytest.raises(SaceError, match="unknown model defaults"):
        split_defaults({"sampling": {"cfg_scale": 2.0}})
    with pytest.raises(SaceError, match="unknown model defaults"):
        split_defaults({"sace": 3})


def test_settings_resolve_from_the_model_once(tiny_model):
    d = tiny_model.sampling_defaults
    assert (d["guidance"], d["temperature"], d["top_k"], d["top_p"]) == (3.0, 0.5, 900, 0.97)
    r = SamplingSettings(temperature=[1.0, 0.7]).resolve(tiny_model)
    assert (r.guidance, r.temperature, r.top_k, r.top_p) == (3.0, [1.0, 0.7], 900, 0.97)
    assert SamplingSettings(top_p=0.5).resolved(tiny_model) == {"guidance": 3.0, "temperature": 0.5, "top_k": 900,
                                                                 "top_p": 0.5}
    for bad in (dict(temperature=0.0), dict(temperature=[1.0, -1.0]), dict(top_k=-1), dict(top_p=1.5)):
        with pytest.raises(SaceError):
            SamplingSettings(**bad).resolve(tiny_model)


def test_saved_model_writes_the_split_layout(tiny_model, tmp_path):
    from sace.models.registry import load_model, save_model

    tiny_model.method_defaults = {"sace": {"gate": "scales:0,1"}}
    try:
        save_model(tiny_model, tmp_path / "m")
    finally:
        tiny_model.method_defaults = {}
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["defaults"] == {"sampling": tiny_model.sampling_defaults, "sace": {"gate": "scales:0,1"}}
    again = load_model(str(tmp_path / "m"))
    assert again.sampling_defaults == tiny_model.sampling_defaults
    assert again.method_defaults == {"sace": {"gate": "scales:0,1"}}
    assert again.defaults["guidance"] == 3.0 and again.defaults["sace"] == {"gate": "scales:0,1"}
