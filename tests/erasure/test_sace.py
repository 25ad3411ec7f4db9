"""SACE training on the embedded model: the losses move the right way, checkpoints resume exactly, NaN stops
training with a clear message and keeps the last good checkpoint, model defaults apply."""

from __future__ import annotations

import pytest
import torch

from sace.adapters import detach_adapters, load_adapter
from sace.domains.fashion.concepts import fashion_concept
from sace.erasure.sace import SACEConfig, SACETrainer, default_sace_config, erase
from sace.errors import SaceError


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def _cfg(**kw):
    base = dict(gate="scale0", lr=1e-3, steps=6, batch_size=8, checkpoint_every=2)
    base.update(kw)
    return SACEConfig(**base)


def test_model_defaults_and_overrides(fashion):
    cfg = default_sace_config(fashion)
    assert cfg.gate == fashion.defaults["sace"]["gate"] and cfg.lr == fashion.defaults["sace"]["lr"]
    assert default_sace_config(fashion, gate="scale0", lr=None).gate == "scale0"
    assert default_sace_config(None).gate == "scale0"          # METHOD.md default without model defaults
    with pytest.raises(SaceError, match="unknown SACE setting"):
        default_sace_config(fashion, learning_rate=1.0)
    with pytest.raises(SaceError, match="prefix of scales"):
        SACEConfig(gate="scales:1,2").erase_scales()


def test_erasure_loss_decreases_and_resume_is_exact(fashion, tmp_path):
    concept = fashion_concept("sneaker", "sandal")
    try:
        res = erase(fashion, concept, _cfg(steps=6), out_dir=tmp_path / "a", progress=False)
        log = res.log
        assert len(log) == 6 and log[-1]["erase"] < log[0]["erase"]
        assert res.tokens_per_step == 2 * (8 + 8)                # one scale-0 token per prompt, cond + null rows
        full = {k: v.clone() for k, v in res.adapter.state_dict().items()}
    finally:
        detach_adapters(fashion)
    # interrupt during step 5 (last checkpoint: step 4), resume to 6: identical weights
    def interrupt(rec):
        if rec["step"] == 5:
            raise KeyboardInterrupt

    tr = SACETrainer(fashion, concept, _cfg(steps=6), work_dir=tmp_path / "b")
    try:
        with pytest.raises(KeyboardInterrupt):
            tr.train(progress=False, callback=interrupt)
    finally:
        detach_adapters(fashion)
    assert torch.load(tmp_path / "b" / "sace_checkpoint.pt", weights_only=True)["step"] == 4
    try:
        res_b = erase(fashion, concept, _cfg(steps=6), out_dir=tmp_path / "b", resume=True, progress=False)
        sd = res_b.adapter.state_dict()
        diffs = {k: float((sd[k] - full[k]).abs().max()) for k in full}
        assert max(diffs.values()) < 1e-6, sorted(diffs.items(), key=lambda x: -x[1])[:3]
    finally:
        detach_adapters(fashion)
    ad = load_adapter(fashion, tmp_path / "a")
    try:
        assert ad.metadata["method"] == "SACE" and ad.metadata["steps"] == 6
    finally:
        detach_adapters(fashion)


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(fashion, tmp_path):
    concept = fashion_concept("sneaker", "sandal")
    tr = SACETrainer(fashion, concept, _cfg(steps=10), work_dir=tmp_path)

    def poison(rec):
        if rec["step"] == 3:
            with torch.no_grad():
                tr.adapter.parameters()[0].fill_(float("nan"))

    try:
        with pytest.raises(SaceError, match="became nan at step 3.*last good checkpoint"):
            tr.train(progress=False, callback=poison)
        assert (tmp_path / "sace_checkpoint.pt").exists()
        st = torch.load(tmp_path / "sace_checkpoint.pt", weights_only=True)
        assert st["step"] == 2 and all(torch.isfinite(v).all() for v in st["adapter"].values())
        # a non-finite state is never written over the last good checkpoint
        with pytest.raises(SaceError, match="non-finite"):
            tr.save_checkpoint()
        assert torch.load(tmp_path / "sace_checkpoint.pt", weights_only=True)["step"] == 2
    finally:
        detach_adapters(fashion)


def test_early_scale_gate_trains_on_gated_scales(fashion):
    concept = fashion_concept("sneaker", "sandal")
    tr = SACETrainer(fashion, concept, _cfg(gate="scales:0,1", steps=2))
    try:
        assert tr.erase_k == 1 and tr.mu == 1.0
        assert tr.tokens_per_step() == 2 * (8 * 5 + 8) + 2 * 8 * 5
        res = tr.train(progress=False)
        assert all(torch.isfinite(torch.tensor(r["loss"])) for r in res.log)
    finally:
        detach_adapters(fashion)


def test_merged_concept_draws_its_batch_per_part(fashion):
    """Several concepts in one adapter: every step holds ``batch_size`` pairs of *each* concept (a draw over
    the union gave the concept with the fewest pairs about a third of the batch), and as many preservation
    rows as target rows."""
    from sace.concepts.spec import merge_concepts

    parts = [fashion_concept("sneaker", "sandal"), fashion_concept("trouser", "dress"), fashion_concept("bag")]
    merged = merge_concepts(parts)
    assert merged.parts == [len(p.targets) for p in parts] and sum(merged.parts) == len(merged.targets)
    tr = SACETrainer(fashion, merged, _cfg(steps=1, batch_size=4))
    try:
        bounds = torch.tensor(merged.parts).cumsum(0)
        for _ in range(5):
            idx = tr.objective._pick_targets()
            part = torch.bucketize(idx, bounds, right=True)
            assert part.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and len(set(idx.tolist())) == 12
        assert tr.tokens_per_step() == 2 * (12 + 12)
        single = SACETrainer(fashion, parts[0], _cfg(steps=1, batch_size=4))
        assert single.objective._pick_targets().numel() == 4 and single.tokens_per_step() == 2 * (4 + 4)
    finally:
        detach_adapters(fashion)
    with pytest.raises(SaceError, match="do not add up"):
        type(merged)(**{**merged.to_dict(), "parts": [1, 2]}).validate()
