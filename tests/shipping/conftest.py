"""Fixtures of the shipping tests: the embedded model, a real SACE adapter erased on it (gate over every scale:
mergeable; audit and post-training check recorded), a scale-0-gated adapter (not mergeable), and a small
`sace attack` output that attacked the SACE adapter. Built once per session, in a temporary folder."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.helpers import random_adapter, save_detached


@pytest.fixture(scope="session")
def fashion():
    from sace.models.registry import load_model

    return load_model("fashion")


@pytest.fixture(scope="session")
def erased_adapter(fashion, tmp_path_factory):
    """A SACE adapter for 'sneaker' (the model's default all-scale gate, 12 steps), with audit and check."""
    from sace.adapters import detach_adapters
    from sace.domains.fashion.concepts import fashion_concept
    from sace.erasure import catalogue
    from sace.erasure.workflow import EraseOptions, erase_checked

    folder = tmp_path_factory.mktemp("ship") / "erase-sneaker"
    cfg = replace(catalogue.get("sace").make_config(fashion, seed=0, steps=12), batch_size=2)
    opts = EraseOptions(check_images=2)
    opts.audit_config.images_per_prompt = 1
    try:
        erase_checked(fashion, fashion_concept("sneaker"), cfg, opts, out_dir=folder, progress=False,
                      say=lambda s: None)
    finally:
        detach_adapters(fashion)
    return folder


@pytest.fixture(scope="session")
def gated_adapter(fashion, tmp_path_factory):
    """A scale-0-gated adapter with random (non-zero) weights on the embedded model."""
    folder = tmp_path_factory.mktemp("ship") / "scale0"
    with torch.random.fork_rng():
        ad = random_adapter(fashion, gate="scale0", modules=["cross_attn_q", "cross_attn_kv", "ffn"], name="s0",
                            seed=3)
    return save_detached(ad, folder, fashion, extra={"method": "random", "concept": "sneaker"})


@pytest.fixture(scope="session")
def attack_dir(fashion, erased_adapter, tmp_path_factory):
    """A finished `sace attack` output: the concept-vector attack against the original model and the adapter."""
    from sace.attacks.benchmark import AttackRequest, run_attack_benchmark, write_attack_benchmark
    from sace.attacks.concept_vector import ConceptVectorConfig
    from sace.attacks.runner import AttackConfigs

    out = tmp_path_factory.mktemp("ship") / "attack"
    req = AttackRequest(["sneaker"], methods=["original"], adapters=[str(erased_adapter)],
                        attacks=[("vector", "anchor")], n_prompts=1, eval_seeds=2, search_seeds=1, sanity=False,
                        configs=AttackConfigs(vector=ConceptVectorConfig([0.0, 2.0])))
    write_attack_benchmark(run_attack_benchmark(fashion, req, out, progress=False), out)
    return out
