"""`sace evaluate`'s library path end to end on the embedded model (small, seeded): every method gets the
metrics, the table and the files; baselines with a few steps; a given adapter row."""

from __future__ import annotations

import json

import pytest

from sace.errors import SaceError
from sace.evaluation.runner import EvalRequest, parse_methods, run_evaluation


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def test_run_evaluation_writes_every_metric(fashion, tmp_path):
    req = EvalRequest(concept="sneaker", anchor="sandal", methods=parse_methods("negprompt,swap0,svare", False),
                      n_per_class=8, n_heldout=8, baseline_steps=2)   # 8 = one grid row per class
    rep = run_evaluation(fashion, req, tmp_path, progress=False)
    data = json.loads((tmp_path / "metrics.json").read_text())
    names = list(data["methods"])
    assert names == ["original", "negative prompt", "scale-0 prompt swap", "S-VARE"]   # the order asked for
    for name, r in data["methods"].items():
        assert 0 <= r["acc_e"] <= 1 and 0 <= r["acc_i"] <= 1 and "acc_e_heldout" in r
        assert r["entropy0_target"] >= 0
        if name != "original":
            assert r["locality_mean_abs_diff"] >= 0 and 0 <= r["locality_changed_frac"] <= 1
    assert data["methods"]["original"]["acc_e"] == 1.0          # the model draws sneakers for sneaker prompts
    assert data["methods"]["S-VARE"]["cost"]["steps"] == 2
    for f in ("table.md", "table.html", "report.html"):
        assert (tmp_path / f).stat().st_size > 200
    assert "ACC_e" in rep["table_markdown"] and (tmp_path / "grids").is_dir()


def test_unknown_method_is_a_clear_error():
    with pytest.raises(SaceError, match="unknown method 'foo'"):
        parse_methods("sace,foo", False)
    assert parse_methods("ablations", False)[0] == "original"
