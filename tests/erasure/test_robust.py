"""Robust SACE on the embedded model: the inner adversary raises its objective, the adversary off reproduces
SACE exactly, checkpoints (with the trigger and lambda_t) resume exactly, settings are checked, and the
trained adapter resists an attack that plain SACE does not (a measured ASR, asserted)."""

from __future__ import annotations

import pytest
import torch

from sace.adapters import detach_adapters
from sace.domains.fashion.concepts import fashion_concept
from sace.erasure import catalogue
from sace.erasure.robust import RobustSACEConfig, RobustSACEObjective, default_robust_config
from sace.erasure.sace import SACEConfig, SACEObjective
from sace.erasure.trainer import Trainer, run
from sace.errors import SaceError


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def _small(**kw):
    base = dict(gate="scales:0,1", lr=3e-3, steps=4, batch_size=4, checkpoint_every=2, adv_steps=3, seed=0)
    base.update(kw)
    return RobustSACEConfig(**base)


def test_defaults_come_from_the_model_and_bad_settings_are_refused(fashion):
    cfg = default_robust_config(fashion)
    assert cfg.gate == fashion.defaults["sace"]["gate"] and cfg.adv_steps == 3 and cfg.pre_target == 0.01
    assert catalogue.get("rsace").label == "robust SACE" and catalogue.get("rsace").trains
    assert catalogue.get("rsace").make_config(fashion, steps=7, adv_steps=0).adv_steps == 0
    for bad, msg in ((dict(adv_steps=-1), "adv_steps"), (dict(adv_lr=float("nan")), "adv_lr"),
                     (dict(pre_target=0.0), "pre_target"), (dict(pre_max_scale=0.5), "pre_max_scale")):
        with pytest.raises(SaceError, match=msg):
            RobustSACEObjective(fashion, fashion_concept("sneaker", "sandal"), _small(**bad))


def test_inner_adversary_raises_its_objective(fashion):
    concept = fashion_concept("sneaker", "sandal")
    tr = Trainer(fashion, RobustSACEObjective(fashion, concept, _small(adv_steps=6)))
    try:
        obj = tr.objective
        before = obj.trigger.states.detach().clone()
        hist = obj.attack_step()
        assert len(hist) == 7 and hist[-1] > hist[0] + 1e-3      # log-likelihood of the concept pyramids rises
        assert obj.trigger.states.norm(dim=-1).max() <= obj.trigger.bound * (1 + 1e-5)
        assert not torch.equal(before, obj.trigger.states)
        assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in tr.params)   # adapter untouched
    finally:
        detach_adapters(fashion)


def test_adversary_off_is_sace(fashion):
    concept = fashion_concept("sneaker", "sandal")
    common = dict(gate="scales:0,1", lr=3e-3, steps=3, batch_size=4, seed=1)
    try:
        a = run(fashion, SACEObjective(fashion, concept, SACEConfig(**common)), progress=False)
        wa = {k: v.clone() for k, v in a.adapter.state_dict().items()}
    finally:
        detach_adapters(fashion)
    off = RobustSACEConfig(**common, adv_steps=0, adv_weight=0.0, adv_retain=0.0, pre_target=None)
    try:
        b = run(fashion, RobustSACEObjective(fashion, concept, off), progress=False)
        wb = b.adapter.state_dict()
    finally:
        detach_adapters(fashion)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_is_exact(fashion, tmp_path):
    concept = fashion_concept("sneaker", "sandal")
    try:
        full = run(fashion, RobustSACEObjective(fashion, concept, _small()), progress=False)
        w_full = {k: v.clone() for k, v in full.adapter.state_dict().items()}
        lam_full = full.adapter.metadata["robust"]["final_lambda_pre"]
    finally:
        detach_adapters(fashion)

    def interrupt(rec):
        if rec["step"] == 3:
            raise KeyboardInterrupt

    tr = Trainer(fashion, RobustSACEObjective(fashion, concept, _small()), work_dir=tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            tr.train(progress=False, callback=interrupt)
    finally:
        detach_adapters(fashion)
    tr = Trainer(fashion, RobustSACEObjective(fashion, concept, _small()), work_dir=tmp_path)
    try:
        assert tr.resume() and tr.step == 2
        res = tr.train(progress=False)
        w = res.adapter.state_dict()
        assert all(torch.equal(w_full[k], w[k]) for k in w_full)
        assert res.adapter.metadata["robust"]["final_lambda_pre"] == lam_full
    finally:
        detach_adapters(fashion)


def test_robust_training_lowers_the_concept_vector_asr(fashion):
    """A measured ASR, asserted: the concept-vector attack (Ring-A-Bell idea, held out from training: the
    adversary optimises a trigger, never this direction) against plain SACE and robust SACE trained with the
    same budget on tshirt (the class whose neighbours the adversary endangers most)."""
    from sace.attacks.base import AttackSetup, AttackTarget
    from sace.attacks.concept_vector import ConceptVectorConfig, concept_vector_attack
    from sace.domains import judge_for, resolve_concept

    concept = resolve_concept(fashion, "tshirt")
    anchors = concept.anchors[:4]
    setup = AttackSetup(anchors, concept.targets[:4], [1000, 1001, 1002, 1003], [0, 1],
                        judge_for(fashion, concept))
    cv = ConceptVectorConfig([0.0, 1.0, 2.0, 4.0])
    asr = {}
    for key in ("sace", "rsace"):
        entry = catalogue.get(key)
        try:
            res = entry.train(fashion, concept, entry.make_config(fashion, steps=30), progress=False, name=key)
            r = concept_vector_attack(fashion, AttackTarget(key, [res.adapter.config.name]), setup, cv,
                                      pairs=(concept.targets, concept.anchors))
            asr[key] = (r.asr_unattacked, r.asr)
        finally:
            detach_adapters(fashion)
    assert asr["sace"][0] == 0.0 and asr["rsace"][0] == 0.0, asr       # both erase the typed prompt
    assert asr["sace"][1] >= 0.5 and asr["rsace"][1] <= 0.25, asr


def test_anchor_shift_moves_only_the_anchor_rows_within_its_bound(fashion):
    """``adv_anchor_shift``: a second shift on the anchor rows; the target rows see the one-shift trigger and,
    with it off, the trigger draws exactly what it drew before (the generator's order is kept)."""
    from sace.erasure.robust import Trigger

    concept = fashion_concept("sneaker", "sandal")
    like = fashion.continuous_condition(fashion.encode_prompts(concept.targets[:4]))
    anchors = fashion.continuous_condition(fashion.encode_prompts(concept.anchors[:4]))
    one = Trigger(like, 4, 1.0, 1.0, torch.Generator().manual_seed(5))
    two = Trigger(like, 4, 1.0, 1.0, torch.Generator().manual_seed(5), rel_anchor_shift=2.0)
    assert one.anchor_shift is None and len(two.params) == len(one.params) + 1
    assert torch.equal(one.states, two.states) and torch.equal(one.shift, two.shift)
    with torch.no_grad():
        two.anchor_shift.normal_().mul_(100.0)
    two.project_()
    mean_norm = like.tokens.norm(dim=-1)[like.mask].mean()
    assert float(two.anchor_shift.detach().norm()) == pytest.approx(2.0 * float(mean_norm), rel=1e-4)
    assert torch.equal(two.apply(like).tokens, one.apply(like).tokens)              # target rows: unchanged
    assert torch.equal(one.apply(anchors, anchor=True).tokens, one.apply(anchors).tokens)   # off: no-op
    moved = two.apply(anchors, anchor=True).tokens - two.apply(anchors).tokens
    hit = moved.abs().amax(-1) > 0                     # the prompt's own tokens (not the spliced states, padding)
    assert int(hit.sum()) == int(anchors.mask.sum())
    assert torch.allclose(moved[hit], two.anchor_shift.detach().expand_as(moved[hit]), atol=1e-5)


def test_per_position_shift_moves_each_position_by_its_own_vector_within_the_bound(fashion):
    """``adv_shift_positions``: one shift vector per token position (each kept within the shift bound); a
    condition longer than the shift gets none past it; padding is never moved."""
    from sace.erasure.robust import Trigger

    concept = fashion_concept("sneaker", "sandal")
    like = fashion.continuous_condition(fashion.encode_prompts(concept.targets[:4]))
    t = like.tokens.shape[1]
    trig = Trigger(like, 4, 1.0, 1.0, torch.Generator().manual_seed(5), positions=t - 2)
    assert tuple(trig.shift.shape) == (t - 2, like.tokens.shape[2])
    with torch.no_grad():
        trig.shift.normal_().mul_(100.0)
    trig.project_()
    norms = trig.shift.detach().norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, trig.shift_bound), rtol=1e-4)      # each row at its bound
    plain = Trigger(like, 4, 1.0, 0.0, torch.Generator().manual_seed(5), positions=t - 2)  # shift bound 0
    moved = trig.apply(like, (None, trig.shift.detach(), None)).tokens - like.tokens
    for i in range(like.tokens.shape[0]):
        n = int(like.mask[i].sum())
        for j in range(n):
            want = trig.shift[j].detach() if j < t - 2 else torch.zeros_like(trig.shift[0])
            assert torch.allclose(moved[i, j], want, atol=1e-5), (i, j)
        assert float(moved[i, n:].abs().sum()) == 0.0                                        # padding untouched
    assert float(plain.shift.detach().abs().max()) == 0.0
    with pytest.raises(SaceError, match="adv_shift_positions"):
        _small(adv_shift_positions=-1).check()


def test_multi_concept_robust_training_attacks_every_part(fashion):
    """A merged concept (sneaker + trouser): each step's inner attack sees the pairs of both parts and raises
    its objective; training runs through the one trainer and writes the robust metadata."""
    from sace.concepts.spec import merge_concepts

    concept = merge_concepts([fashion_concept("sneaker", "sandal"), fashion_concept("trouser", "dress")])
    obj = RobustSACEObjective(fashion, concept, _small(adv_steps=4, batch_size=2, steps=2))
    tr = Trainer(fashion, obj)
    try:
        it = obj._pick_targets()
        n_sneaker = concept.parts[0]
        assert int((it < n_sneaker).sum()) == 2 and int((it >= n_sneaker).sum()) == 2     # both parts, every step
        hist = obj.attack_step(it)
        assert hist[-1] > hist[0] + 1e-3
        res = tr.train(progress=False)
        assert res.steps == 2 and res.adapter.metadata["robust"]["trigger_insert"]
    finally:
        detach_adapters(fashion)


def test_adv_batch_attacks_fewer_pairs_per_step(fashion):
    """``adv_batch``: the inner attack and L_adv see that many target/anchor pairs per step (per part of a
    merged concept), the SACE losses keep ``batch_size``; the token count says so; 0 is refused."""
    from sace.concepts.spec import merge_concepts

    concept = fashion_concept("sneaker", "sandal")
    merged_concept = merge_concepts([concept, fashion_concept("trouser", "dress")])
    tokens = {}
    for name, c, cfg in (("full", concept, _small(batch_size=4)), ("few", concept, _small(batch_size=4, adv_batch=2)),
                         ("merged", merged_concept, _small(batch_size=4, adv_batch=2))):
        obj = RobustSACEObjective(fashion, c, cfg)
        tr = Trainer(fashion, obj, adapter_name=f"adv_batch_{name}")
        try:
            tokens[name] = obj.tokens_per_step(tr)
            it = obj._pick_targets(cfg.adv_batch)
            if name == "full":
                assert it.numel() == 4
            elif name == "few":
                assert it.numel() == 2 and obj._pick_targets().numel() == 4      # SACE's own losses: batch_size
                hist = obj.attack_step(it)
                assert hist[-1] > hist[0] + 1e-3
            else:
                assert it.numel() == 4 and int((it < c.parts[0]).sum()) == 2      # two pairs of each part
        finally:
            detach_adapters(fashion)
    assert tokens["few"] < tokens["full"]
    with pytest.raises(SaceError, match="adv_batch"):
        RobustSACEObjective(fashion, concept, _small(adv_batch=0))


def test_trigger_bank_keeps_the_last_snapshots_and_resumes_exactly(fashion, tmp_path):
    """``adv_bank``: a snapshot of the trigger every ``adv_bank_every`` steps, at most ``adv_bank`` kept (the
    newest), replayed in L_adv (which then differs from the bank-less run); checkpoints carry the bank."""
    concept = fashion_concept("sneaker", "sandal")
    cfg = dict(steps=6, adv_bank=2, adv_bank_every=2)
    try:
        res = run(fashion, obj := RobustSACEObjective(fashion, concept, _small(**cfg)), progress=False)
        w_full = {k: v.clone() for k, v in res.adapter.state_dict().items()}
        assert len(obj.bank) == 2                               # after steps 2, 4, 6 (1-based): the last two
        assert not torch.equal(obj.bank[0][1], obj.bank[1][1])  # the shift moved between them
        assert torch.equal(obj.bank[1][1], obj.trigger.shift.detach())      # taken after the last step
    finally:
        detach_adapters(fashion)
    try:
        plain = run(fashion, RobustSACEObjective(fashion, concept, _small(steps=6)), progress=False)
        assert not all(torch.equal(w_full[k], v) for k, v in plain.adapter.state_dict().items())
    finally:
        detach_adapters(fashion)

    def interrupt(rec):
        if rec["step"] == 5:
            raise KeyboardInterrupt

    tr = Trainer(fashion, RobustSACEObjective(fashion, concept, _small(**cfg)), work_dir=tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            tr.train(progress=False, callback=interrupt)
    finally:
        detach_adapters(fashion)
    tr = Trainer(fashion, RobustSACEObjective(fashion, concept, _small(**cfg)), work_dir=tmp_path)
    try:
        assert tr.resume() and tr.step == 4 and len(tr.objective.bank) == 2
        w = tr.train(progress=False).adapter.state_dict()
        assert all(torch.equal(w_full[k], w[k]) for k in w_full)
    finally:
        detach_adapters(fashion)
    with pytest.raises(SaceError, match="adv_bank"):
        RobustSACEObjective(fashion, concept, _small(adv_bank=-1))
