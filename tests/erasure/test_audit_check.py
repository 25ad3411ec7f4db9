"""The pre-training audit and the post-training check on the embedded model, with its real classifier."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sace.adapters import AdapterConfig, attach_adapter, detach_adapters
from sace.concepts.spec import from_prompts
from sace.erasure.audit import AuditConfig, AuditError, audit_concept, judge_or_note
from sace.erasure.check import CheckThresholds, post_training_check, verdict
from sace.errors import SaceError


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def _trouser(anchors):
    return from_prompts("trouser", ["a photo of a pair of trousers", "a photo of a pair of jeans"], anchors=anchors,
                        retain=["a photo of a coat", "a photo of a pair of pants"], words=["trousers", "jeans"],
                        heldout=["denim jeans laid out flat"])


def test_bad_anchor_fails_the_audit_by_name(fashion):
    # the case: word replacement made "a pair of dress", which the model draws as trousers
    spec = _trouser(["a photo of a pair of dress", "a photo of a dress"])
    with pytest.raises(AuditError, match=r"'a photo of a pair of dress' \(1\.00\)") as ei:
        audit_concept(fashion, spec, config=AuditConfig(images_per_prompt=4))
    res = ei.value.result
    assert [p for p, _ in res.bad_anchors] == ["a photo of a pair of dress"]
    # a retain prompt that draws the concept is dropped with a note, the good one kept
    assert [p for p, _ in res.dropped["retain"]] == ["a photo of a pair of pants"]


def test_good_anchor_passes_and_drops_bad_preservation_prompts(fashion):
    spec = _trouser(["a photo of a dress", "a photo of a dress"])
    res, clean = audit_concept(fashion, spec, config=AuditConfig(images_per_prompt=4))
    assert res.ok and res.sets["anchors"]["rate"] == 0.0 and res.sets["targets"]["rate"] == 1.0
    assert clean.retain == ["a photo of a coat"] and spec.retain != clean.retain
    assert not res.warnings
    d = res.to_dict()
    assert d["ok"] and d["detector"] == "fashion-classifier"


def test_targets_that_do_not_draw_the_concept_warn(fashion):
    spec = from_prompts("trouser", ["a photo of a coat"], anchors=["a photo of a dress"])
    res, _ = audit_concept(fashion, spec, config=AuditConfig(images_per_prompt=2))
    assert res.warnings and "little to erase" in res.warnings[0]


def test_detectors(fashion):
    spec = from_prompts("unicorn", ["a unicorn"], anchor="horse")
    judge, why = judge_or_note(fashion, spec, "auto")
    assert judge is None and "NOT checked" in why and "fashion detector knows no class 'unicorn'" in why
    with pytest.raises(SaceError, match="fashion detector knows no class"):
        judge_or_note(fashion, spec, "fashion")
    none, why = judge_or_note(fashion, spec, "none")
    assert none is None and "NOT checked" in why
    res, same = audit_concept(fashion, spec, "none")
    assert res.detector is None and same is spec and "NOT checked" in res.lines()[0]

    # a user callable: "concept" = bright image
    def bright(imgs):
        return (imgs.mean(dim=(1, 2, 3)) > 0.99).float()
    judge, _ = judge_or_note(fashion, spec, bright)
    assert judge.flag(torch.ones(2, 3, 8, 8)).tolist() == [True, True] and judge.rule == "user score >= 0.5"
    assert judge.flag(torch.zeros(1, 3, 8, 8)).tolist() == [False] and judge.name == "bright"
    res, _ = audit_concept(fashion, spec, bright, AuditConfig(images_per_prompt=1))
    assert res.ok and res.sets["targets"]["rate"] == 0.0 and res.warnings


def test_check_verdict_flips_with_the_threshold(fashion):
    spec = _trouser(["a photo of a dress", "a photo of a dress"])
    # an adapter that does nothing yet (B = 0): the check measures the original model
    attach_adapter(fashion, AdapterConfig(name="chk", gate="shared"), seed=0)
    try:
        res = post_training_check(fashion, spec, "chk", n=6)
    finally:
        detach_adapters(fashion)
    # 6 target images all trousers: ACC_e 1.0, its interval entirely above 5% -> FAIL; the no-op adapter
    # changes no retain image (drop 0), but 27 pairs cannot show a drop <= 2 points -> not decided
    assert res.acc_e == 1.0 and res.acc_i_drop == 0.0 and res.heldout is not None
    assert res.n == 6 and res.looks == [6] and res.images == 6 + 6 + 2 * 27
    by = {f["name"]: f for f in res.figures}
    assert by["ACC_e"]["verdict"] == "FAIL" and by["ACC_e"]["lower"] > 0.05
    assert by["ACC_i drop"]["verdict"] == "not decided" and by["ACC_i drop"]["detail"]["table_abcd"][1:3] == [0, 0]
    assert res.passed is False and res.verdict == "FAIL" and any("ACC_e" in f for f in res.failures)
    # the same measurement against other lines: the intervals stay, the verdicts follow the lines
    loose = CheckThresholds(max_acc_e=1.0, max_heldout=1.0, max_acc_i_drop=1.0)
    assert verdict(dataclasses.replace(res), loose).verdict == "PASS"
    lo_e = by["ACC_e"]["lower"]
    just_below = dataclasses.replace(loose, max_acc_e=lo_e - 0.01)
    v = verdict(dataclasses.replace(res), just_below)
    assert v.passed is False and v.failures == [f"ACC_e 1.000 [{lo_e:.3f}, 1.000] > {lo_e - 0.01:.3f}"]
    undecided = verdict(dataclasses.replace(res), dataclasses.replace(loose, max_acc_i_drop=0.02))
    assert undecided.verdict == "not decided" and undecided.passed is False
    assert "not decided with 6 images per set (about" in undecided.line()
    assert "FAIL" in v.line() and "PASS" in verdict(dataclasses.replace(res), loose).line()
    with pytest.raises(SaceError, match="threshold"):
        CheckThresholds(max_acc_e=5).validate()


def test_cli_audit_names_the_bad_anchor(tmp_path):
    from tests.cli.test_cli import _run

    # "a pair of jeans" is one of trouser's own names: the resolver's static word check refuses it before any
    # image is drawn (issue 24), naming the prompt and the fix
    r = _run("audit", "--concept", "trouser", "--anchor", "a pair of jeans", "--images", "1", "--out", str(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(err) == 1 and "'a photo of a pair of jeans'" in err[0] and "--anchor" in err[0], err


def test_stored_audit_and_check_read_back_for_reports():
    from sace.erasure.audit import AuditResult
    from sace.erasure.check import CheckResult
    from sace.evaluation.runner import _cost_from_meta

    audit = AuditResult("trouser", "fashion-classifier", "top-1", sets={"anchors": {"rate": 0.0}},
                        dropped={"retain": [("a photo of a pair of pants", 1.0)]})
    check = verdict(CheckResult("trouser", "fashion-classifier", 10, acc_e=0.2, heldout=0.0, acc_i_drop=0.0),
                    CheckThresholds())
    lines = _cost_from_meta({"audit": audit.to_dict(), "check": check.to_dict()})["checks"]
    assert "anchors 0.00" in lines[0] and "a photo of a pair of pants" in lines[1]
    assert lines[-1].endswith("FAIL (ACC_e 0.200 > 0.050)")


def test_audit_on_a_class_conditional_model_skips_the_context_only_prompts():
    """fashion-var: "a photo of a" names no class, and training leaves such prompts out of L_pre; the audit
    audits what training uses (it used to stop `sace erase --model fashion-var` with an unknown-class error)."""
    from sace.models.registry import load_model
    fv = load_model("fashion-var")
    spec = from_prompts("sneaker", ["a photo of a sneaker", "sneaker"], anchors=["a photo of a sandal", "sandal"],
                        retain=["a photo of a coat"], words=["sneaker"])
    spec = dataclasses.replace(spec, entangled=["a photo of a"])
    res, clean = audit_concept(fv, spec, config=AuditConfig(images_per_prompt=2))
    assert set(res.sets) == {"anchors", "targets", "retain"} and res.ok
    assert res.sets["targets"]["rate"] == 1.0 and res.sets["anchors"]["rate"] == 0.0
    assert res.images == 5 * 2 and clean.entangled == ["a photo of a"]
