"""`sace evaluate`'s library path end to end on the embedded model (small, seeded): every method gets the
metrics, the table and the files; baselines with a few steps; a given adapter row."""

from __future__ import annotations

import json

import pytest

from sace.errors import SaceError
from sace.evaluation.runner import EvalRequest, parse_methods, run_evaluation
from sace.outputs import write_evaluation


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def test_run_evaluation_measures_every_method_and_writes_once(fashion, tmp_path):
    req = EvalRequest(concept="sneaker", anchor="sandal", methods=parse_methods("negprompt,swap0,svare", False),
                      n_per_class=8, n_heldout=8, baseline_steps=2)   # 8 = one grid row per class
    rep = run_evaluation(fashion, req, tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()                  # the library returns, the caller writes
    assert rep.detector == "fashion" and rep.result.n_items == 88
    assert rep.result.groups == {"target": 8, "other": 72, "heldout": 8}
    ms = rep.result.methods
    assert list(ms) == ["original", "negative prompt", "scale-0 prompt swap", "S-VARE"]   # the order asked for
    # seeded values on the embedded model (ACC over 8 images per class; entropies in nats)
    expect = {"original": (1.0, 0.944444, 1.0, 0.112645, None),
              "negative prompt": (1.0, 0.736111, 0.75, 0.176280, 0.127736),
              "scale-0 prompt swap": (1.0, 0.944444, 1.0, 0.043249, 0.0),
              "S-VARE": (0.875, 0.944444, 0.875, 0.108489, 0.033169)}
    for name, (acc_e, acc_i, held, h0, loc) in expect.items():
        r = ms[name]
        assert (r["acc_e"], r["acc_e_heldout"]) == (acc_e, held), name
        assert r["acc_i"] == pytest.approx(acc_i, abs=1e-6) and r["entropy0_target"] == pytest.approx(h0, abs=1e-4)
        assert r.get("locality_mean_abs_diff") == (None if loc is None else pytest.approx(loc, abs=1e-4)), name
    assert ms["scale-0 prompt swap"]["entropy0_other"] == ms["original"]["entropy0_other"]  # no sneaker word
    assert ms["S-VARE"]["cost"]["steps"] == 2
    # the check's figures against the original model (sace.evaluation.decision, one look): the prompt swap
    # leaves every other-class image as it was (drop 0, no discordant pair) but keeps sneakers (FAIL); the
    # negative prompt costs the other classes 20.8 points, its interval entirely above the 2-point line
    assert "figures" not in ms["original"]
    swap = {f["name"]: f for f in ms["scale-0 prompt swap"]["figures"]}
    assert list(swap) == ["ACC_e", "held-out", "ACC_i drop"] and ms["scale-0 prompt swap"]["verdict"] == "FAIL"
    assert swap["ACC_i drop"]["estimate"] == 0.0 and swap["ACC_i drop"]["detail"]["table_abcd"][1:3] == [0, 0]
    neg = {f["name"]: f for f in ms["negative prompt"]["figures"]}["ACC_i drop"]
    assert neg["estimate"] == pytest.approx(0.944444 - 0.736111, abs=1e-5) and neg["verdict"] == "FAIL"
    assert neg["lower"] > 0.02 and rep.rows[1]["verdict"] == "FAIL"
    assert rep.rows[0]["method"] == "original" and rep.rows[-1]["ACC_e ↓"] == 0.875
    assert "| S-VARE |" in rep.table_markdown and "**0.875**" in rep.table_markdown   # the best ACC_e is bold
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == [
        "S-VARE.png", "negative_prompt.png", "original.png", "scale-0_prompt_swap.png"]

    write_evaluation(tmp_path, rep, extra={"timings": {"total_s": 1.0}})
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert list(data) == ["methods", "settings", "n_items", "groups", "concept", "detector", "table_markdown",
                          "timings"]
    assert data["concept"]["name"] == "sneaker" and data["table_markdown"] == rep.table_markdown
    assert (tmp_path / "table.md").read_text() == rep.table_markdown
    assert (tmp_path / "table.html").read_text().startswith("<table>")


def test_unknown_method_is_a_clear_error():
    with pytest.raises(SaceError, match="unknown method 'foo'"):
        parse_methods("sace,foo", False)
    assert parse_methods("ablations", False)[0] == "original"
