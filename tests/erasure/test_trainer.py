"""The shared trainer: every method resumes exactly from an interrupted run, and writes one adapter folder."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sace.adapters import detach_adapters
from sace.domains.fashion.concepts import fashion_concept
from sace.erasure.baselines import ESDConfig, ESDObjective, SVAREConfig, SVAREObjective
from sace.erasure.sace import SACEConfig, SACEObjective
from sace.erasure.trainer import Trainer, run


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


def _objective(method: str, model):
    full = fashion_concept("sneaker", "sandal")
    # a few prompts of each set keep the teacher passes short
    concept = dataclasses.replace(full, targets=full.targets[:4], anchors=full.anchors[:4], retain=full.retain[:4],
                                  entangled=full.entangled[:4])
    if method == "sace":
        return SACEObjective(model, concept, SACEConfig(gate="scale0", steps=2, lr=2e-3, batch_size=4,
                                                        checkpoint_every=1))
    if method == "svare":
        return SVAREObjective(concept, SVAREConfig(steps=2, lr=1e-3, batch_size=2, checkpoint_every=1))
    return ESDObjective(concept, ESDConfig(steps=2, batch_size=2, checkpoint_every=1))


@pytest.mark.parametrize("method", ["sace", "svare", "esd"])
def test_interrupted_run_resumes_bit_identically(fashion, tmp_path, method):
    try:
        full = run(fashion, _objective(method, fashion), out_dir=tmp_path / "full", progress=False)
        ref = {k: v.clone() for k, v in full.adapter.state_dict().items()}
        assert [r["step"] for r in full.log] == [1, 2]
    finally:
        detach_adapters(fashion)
    meta = json.loads((tmp_path / "full" / "adapter.json").read_text())
    assert meta["steps"] == 2 and meta["method"] == full.name and meta["final_log"] == full.log[-1]
    assert json.loads((tmp_path / "full" / "train_log.json").read_text())["log"] == full.log
    assert not (tmp_path / "full" / f"{method}_checkpoint.pt").exists()     # removed once the folder is written

    def interrupt(rec):
        if rec["step"] == 2:
            raise KeyboardInterrupt

    tr = Trainer(fashion, _objective(method, fashion), work_dir=tmp_path / "cut")
    try:
        with pytest.raises(KeyboardInterrupt):
            tr.train(progress=False, callback=interrupt)
    finally:
        detach_adapters(fashion)
    assert torch.load(tmp_path / "cut" / f"{method}_checkpoint.pt", weights_only=True)["step"] == 1
    try:
        res = run(fashion, _objective(method, fashion), out_dir=tmp_path / "cut", resume=True, progress=False)
        sd = res.adapter.state_dict()
        assert res.log == full.log
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
    finally:
        detach_adapters(fashion)
