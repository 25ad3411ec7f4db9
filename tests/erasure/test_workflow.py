"""sace erase end to end on the embedded model, small: audit -> train -> check -> train on -> adapter.json."""

from __future__ import annotations

import json

from sace.adapters import detach_adapters
from sace.concepts.spec import from_prompts
from sace.erasure.check import CheckThresholds
from sace.erasure.sace import SACEConfig
from sace.erasure.workflow import EraseOptions, erase_checked


def test_erase_checked_stores_audit_and_check_and_trains_until_the_budget(tmp_path):
    from sace.models.registry import load_model

    m = load_model("fashion")
    spec = from_prompts("trouser", ["a photo of a pair of trousers", "a photo of a pair of jeans"],
                        anchors=["a photo of a dress"] * 2, retain=["a photo of a coat", "a photo of a pair of pants"],
                        words=["trousers", "jeans", "pants"], heldout=["denim jeans laid out flat"])
    said = []
    opts = EraseOptions(check_images=2, until_pass=True, max_steps=4, chunk=2,
                        thresholds=CheckThresholds(max_acc_e=0.0, max_heldout=0.0, max_acc_i_drop=0.0))
    opts.audit_config.images_per_prompt = 2
    try:
        out = erase_checked(m, spec, SACEConfig(gate="scale0", steps=2, batch_size=2, lr=1e-3), opts,
                            out_dir=tmp_path / "ad", progress=False, say=said.append)
    finally:
        detach_adapters(m)
    # 2 steps do not erase trousers: the check fails, training goes on to the 4-step budget, then stops
    assert out.check.passed is False and out.rounds == 2 and len(out.result.log) == 4
    assert any("training on to step 4" in s for s in said) and any("still says FAIL after 4 steps" in s for s in said)
    # the retain prompt that draws trousers was dropped by the audit before training
    assert out.concept.retain == ["a photo of a coat"]
    meta = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    meta = meta.get("metadata", meta)
    assert meta["audit"]["ok"] and meta["audit"]["dropped"]["retain"][0][0] == "a photo of a pair of pants"
    assert meta["check"]["steps"] == 4 and meta["check"]["passed"] is False and meta["steps"] == 4
    # the folder is written once, with the peak memory of the whole run (the model alone is > 100 MB of RSS)
    assert meta["peak_mb"] > 100
