"""The method catalogue: one row per method (key, label, trained or not), the rows every command lists, configs
that refuse what a method has no field for, and training through a row on the tiny fixture."""

from __future__ import annotations

import pytest

from sace.adapters import detach_adapters
from sace.concepts.spec import from_prompts
from sace.erasure import catalogue
from sace.erasure.baselines import SVAREConfig
from sace.erasure.sace import SACEConfig
from sace.errors import SaceError


@pytest.fixture(scope="module")
def tiny():
    from sace.models.registry import load_model
    return load_model("infinity-tiny-fixture")          # with its word-hash text encoder


def _cat():
    return from_prompts("cat", ["a photo of a cat", "a cat on a sofa"], anchor="dog", retain=["a red car"])


def test_one_row_per_method_in_table_order():
    assert list(catalogue.METHODS) == ["original", "sace", "rsace", "svare", "esd", "negprompt", "swap0",
                                       "sace_noent", "sace_nopre", "sace_shared", "sace_scale0"]
    assert [m.label for m in catalogue.METHODS.values()][:7] == [
        "original", "SACE", "robust SACE", "S-VARE", "ESD (all scales)", "negative prompt", "scale-0 prompt swap"]
    assert catalogue.keys(trained=True) == ["sace", "rsace", "svare", "esd", "sace_noent", "sace_nopre",
                                            "sace_shared", "sace_scale0"]
    assert catalogue.DEFAULT_METHOD == "sace" and catalogue.get("SACE").key == "sace"
    assert catalogue.select("all") == ["original", "sace", "rsace", "svare", "esd", "negprompt", "swap0"]
    assert catalogue.select("sace,ablations,sace") == ["sace", "sace_noent", "sace_nopre", "sace_shared",
                                                       "sace_scale0"]
    assert catalogue.select(None) == ["original"]
    with pytest.raises(SaceError, match="unknown method 'foo'; choose from original, sace"):
        catalogue.select("sace,foo")


def test_configs_take_the_models_defaults_and_refuse_what_a_method_lacks(tiny):
    assert isinstance(catalogue.get("sace").make_config(tiny, steps=3), SACEConfig)
    svare = catalogue.get("svare").make_config(tiny, steps=2, seed=5, rank=None)   # None: not given
    assert isinstance(svare, SVAREConfig) and (svare.steps, svare.seed) == (2, 5)
    with pytest.raises(SaceError, match="unknown S-VARE setting 'rank'"):
        catalogue.get("svare").make_config(tiny, rank=4)
    noent = catalogue.get("sace_noent").make_config(tiny, lambda_h=0.0, steps=1)
    assert noent.lambda_h == 0.0 and noent.steps == 1
    with pytest.raises(SaceError, match="sace_noent fixes lambda_h = 0.0"):
        catalogue.get("sace_noent").make_config(tiny, lambda_h=0.5)
    with pytest.raises(SaceError, match=r"negprompt \(negative prompt\) trains nothing"):
        catalogue.get("negprompt").make_config(tiny)
    assert catalogue.get("negprompt").negative_prompt(_cat()) == "a photo of a cat"
    assert len(catalogue.get("swap0").conditions(tiny, ["a cat"], _cat())) == tiny.schedule.num_scales


@pytest.mark.parametrize("key", ["sace", "rsace", "svare", "esd"])
def test_every_trained_row_trains_through_the_one_trainer(tiny, key, tmp_path):
    row = catalogue.get(key)
    cfg = row.make_config(tiny, steps=1, seed=0, batch_size=2)
    try:
        res = row.train(tiny, _cat(), cfg, out_dir=tmp_path / key, progress=False, name=f"cat_{key}")
    finally:
        detach_adapters(tiny)
    assert res.steps == 1 and res.adapter.config.name == f"cat_{key}"
    assert res.adapter.metadata["method"] == row.label          # adapter.json's "method" is the row label
    assert (tmp_path / key / "adapter.safetensors").is_file() and not list((tmp_path / key).glob("*checkpoint*"))
