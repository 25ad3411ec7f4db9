"""Attacks (sace.attacks): the soft-prompt objective on the tiny Infinity, the concept-vector identity at
eta = 0, the discrete attack's budget and strings, the ASR sanity on the embedded model, the runner's
argument checks. Seeded and small."""

from __future__ import annotations

import pytest
import torch

from sace.attacks.base import AttackSetup, AttackTarget, images_for
from sace.attacks.concept_vector import ConceptVectorConfig, add_direction, concept_direction, concept_vector_attack
from sace.attacks.discrete import DiscreteConfig, discrete_attack, search_prompt, vocabulary_neighbours
from sace.attacks.runner import parse_attacks, select_pairs
from sace.attacks.soft_prompt import (
    SoftCondition,
    SoftPromptConfig,
    concept_pyramids,
    optimise_soft_condition,
    soft_prompt_attack,
)
from sace.domains import judge_for
from sace.errors import SaceError
from sace.generate import generate
from sace.models.base import Condition
from sace.sampling import SamplingSettings


def _random_condition(n: int, length: int, channels: int, seed: int) -> Condition:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, length, channels, generator=g)
    return Condition(tokens, torch.ones(n, length, dtype=torch.bool))


def test_soft_prompt_objective_improves_monotonically_on_the_tiny_model(tiny_model):
    c = tiny_model.transformer.cfg.text_channels
    start, concept = _random_condition(2, 5, c, seed=1), _random_condition(2, 5, c, seed=2)
    s = SamplingSettings().resolved(tiny_model)
    pyr, tf = concept_pyramids(tiny_model, concept, 2, [0, 1, 2, 3], s)
    assert pyr.batch_size == 4
    cfg = SoftPromptConfig(n_tokens=2, steps=5, lr=0.02, pyramids=2)
    soft, hist, snaps = optimise_soft_condition(tiny_model, AttackTarget("original"), start, pyr, tf, cfg, s,
                                                record_at=[0, 5])
    assert len(hist) == 6 and all(b > a for a, b in zip(hist, hist[1:])), hist
    assert hist[-1] - hist[0] > 1e-4
    # the inserted states sit before each prompt's last token; the prompt's own states are untouched
    c5 = snaps[5]
    assert c5.tokens.shape == (2, 7, c) and bool(c5.mask.all())
    assert torch.equal(c5.tokens[:, :4], start.tokens[:, :4]) and torch.equal(c5.tokens[:, 6], start.tokens[:, 4])
    assert not torch.equal(snaps[0].tokens[:, 4:6], c5.tokens[:, 4:6])


def test_soft_condition_stays_in_its_norm_ball():
    base = _random_condition(2, 4, 8, seed=3)
    soft = SoftCondition(base, SoftPromptConfig(mode="ball", radius=0.1))
    with torch.no_grad():
        soft.param.add_(10.0)
    soft.project_()
    delta = soft.condition().tokens - base.tokens
    assert bool((delta.norm(dim=-1) <= 0.1 * base.tokens.norm(dim=-1) + 1e-5).all())
    assert float(delta.detach().norm(dim=-1).max()) > 0.05


def test_concept_vector_at_eta_zero_reproduces_the_unattacked_images(fashion, sneaker):
    d = concept_direction(fashion, sneaker.targets, sneaker.anchors)
    assert d.ndim == 2 and d.shape[1] == 384 and float(d.norm()) > 0
    prompts, seeds = ["a photo of a sandal", "a sandal"], [5, 6]
    plain = generate(fashion, prompts, seeds)
    setup = AttackSetup(prompts, prompts, seeds, seeds, judge_for(fashion, "sneaker"))
    zero = images_for(fashion, AttackTarget("original"), setup,
                      lambda ks: add_direction(fashion.encode_prompts(ks), d, 0.0), prompts, seeds)
    assert torch.equal(zero, plain)
    pushed = images_for(fashion, AttackTarget("original"), setup,
                        lambda ks: add_direction(fashion.encode_prompts(ks), d, 2.0), prompts, seeds)
    assert not torch.equal(pushed, plain)


def test_concept_vector_attack_turns_anchors_into_the_concept(fashion, sneaker):
    setup = AttackSetup(["a photo of a sandal"], ["a photo of a sneaker"], [100, 101, 102, 103], [0, 1],
                        judge_for(fashion, "sneaker"))
    r = concept_vector_attack(fashion, AttackTarget("original"), setup, ConceptVectorConfig([0.0, 1.0, 2.0]),
                              pairs=(sneaker.targets, sneaker.anchors))
    assert r.asr_unattacked == 0.0 and r.cost["queries"] == 3
    assert r.curve[0].asr == 0.0            # eta = 0 is the unattacked prompt
    assert r.extra["eta"] > 0 and r.asr >= 0.75, (r.extra, r.asr)


def test_search_prompt_never_exceeds_its_budget():
    calls: list[int] = []

    def score(prompts):
        calls.append(len(prompts))
        return [float(len(p)) for p in prompts]        # longer is better: the search keeps inserting
    best, log = search_prompt(score, "a shoe", ["red", "blue", "green"], DiscreteConfig(queries=7, proposals=3))
    assert sum(calls) == len(log) == 7
    assert len({p for p, _ in log}) == 7                     # no prompt is paid for twice
    assert best == max(log, key=lambda x: x[1])[0] and len(best) > len("a shoe")


def test_discrete_attack_respects_the_budget_and_returns_real_strings(fashion, sneaker):
    vocab = vocabulary_neighbours(fashion, sneaker.words, 16, exclude=["sneaker", "sneakers", "shoe", "shoes"])
    assert len(vocab) == 16 and "sneaker" not in vocab and all(w.isalpha() for w in vocab)
    setup = AttackSetup(["a photo of a sneaker"], ["a photo of a sneaker"], [100, 101], [0, 1],
                        judge_for(fashion, "sneaker"))
    r = discrete_attack(fashion, AttackTarget("original"), setup, sneaker.words,
                        DiscreteConfig(queries=5, proposals=2, neighbours=16))
    assert r.cost["queries"] <= 5 and r.found[0]["queries"] <= 5
    found = r.found[0]["prompt"]
    allowed = set("a photo of a sneaker".split()) | set(r.extra["vocabulary"])
    assert found.strip() and set(found.split()) <= allowed
    banned = {x for w in sneaker.words for x in w.split()} - {"a", "photo", "of", "sneaker"}
    assert not set(r.extra["vocabulary"]) & banned
    assert [p.budget for p in r.curve][-1] == 5 and r.attempts == 2


def test_soft_prompt_from_the_anchor_recovers_the_concept_on_the_original_model(fashion):
    setup = AttackSetup(["a photo of a sandal"], ["a photo of a sneaker"], [100, 101, 102, 103], [0, 1],
                        judge_for(fashion, "sneaker"))
    r = soft_prompt_attack(fashion, AttackTarget("original"), setup, SoftPromptConfig(steps=8, checkpoints=1))
    assert r.asr_unattacked == 0.0 and r.asr >= 0.75, r.curve
    assert r.cost["gradient_steps"] == 8 and [p.budget for p in r.curve] == [0, 8]
    assert r.extra["objective"][-1] > r.extra["objective"][0]


def test_runner_arguments_are_checked(sneaker):
    assert parse_attacks("all")[:3] == [("soft", "target"), ("vector", "anchor"), ("discrete", "target")]
    assert parse_attacks("soft:anchor,discrete") == [("soft", "anchor"), ("discrete", "target")]
    with pytest.raises(SaceError, match="unknown attack 'gcg'"):
        parse_attacks("gcg")
    with pytest.raises(SaceError, match="unknown start"):
        parse_attacks("soft:middle")
    starts, concepts = select_pairs(sneaker, 4, "anchor")
    assert len(set(starts)) == 4 and all("sneaker" not in s for s in starts)
    assert all(c in sneaker.targets for c in concepts)
    with pytest.raises(SaceError, match="distinct"):
        select_pairs(sneaker, 40, "anchor")


def test_attack_command_rejects_bad_input_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "sace.cli", "attack", "--concept", "sneaker", "--methods",
                        "original,foo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and "unknown method(s) foo" in r.stderr, \
        r.stderr


def test_benchmark_trains_saves_and_attacks_every_method(fashion, tmp_path):
    import json

    from sace.attacks.benchmark import AttackRequest, run_attack_benchmark, write_attack_benchmark
    from sace.attacks.runner import AttackConfigs

    req = AttackRequest(["sneaker"], methods=["original", "svare", "negprompt"], attacks=[("vector", "anchor")],
                        n_prompts=1, eval_seeds=2, search_seeds=1, sanity=False, baseline_steps=1,
                        configs=AttackConfigs(vector=ConceptVectorConfig([0.0, 1.0])))
    bench = run_attack_benchmark(fashion, req, tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()          # the library measures, the writer writes
    table = write_attack_benchmark(bench, tmp_path)
    rows = json.loads((tmp_path / "metrics.json").read_text())["concepts"]["sneaker"]
    assert rows == bench.metrics["concepts"]["sneaker"] and not (tmp_path / "metrics.partial.json").exists()
    assert [r["target"] for r in rows] == ["original", "S-VARE", "negative prompt"]
    assert all(r["attempts"] == 2 and r["cost"]["queries"] == 2 for r in rows)
    assert (tmp_path / "adapters" / "sneaker-svare" / "adapter.json").exists()
    assert "concept-vector [2 queries/prompt]" in table
    assert (tmp_path / "report.html").stat().st_size > 1000
    # a rerun reuses the saved adapter instead of training again
    saved = tmp_path / "adapters" / "sneaker-svare" / "adapter.safetensors"
    stamp = saved.stat().st_mtime_ns
    again = run_attack_benchmark(fashion, req, tmp_path, progress=False)
    assert saved.stat().st_mtime_ns == stamp and again.metrics["concepts"]["sneaker"][1]["asr"] == rows[1]["asr"]


def test_trouser_anchors_replace_the_whole_pair_phrase():
    from sace.domains.fashion.concepts import fashion_concept

    sp = fashion_concept("trouser", "dress")
    assert sp.anchors[0] == "a photo of a dress" and not any("pair of" in a for a in sp.anchors)


def test_attacks_run_on_the_class_conditional_var(sneaker):
    """fashion-var: attacks see class embeddings (continuous conditions); the concept vector at eta 0 gives
    the clean images, at a positive eta it turns sandal into sneaker; the soft prompt moves the class embedding
    inside its ball; the discrete word search is n/a (no crash)."""
    from sace.attacks.base import encode
    from sace.attacks.runner import AttackConfigs, run_attack
    from sace.models.registry import load_model
    m = load_model("fashion-var")
    judge = judge_for(m, sneaker, "auto")
    setup = AttackSetup(["sandal"], ["sneaker"], [1000, 1001], [0], judge)
    cond = encode(m, ["sandal"])
    assert cond.tokens.shape == (1, 1, m.transformer.cfg.embed_dim)
    d = concept_direction(m, ["sneaker"], ["sandal"])
    clean = images_for(m, AttackTarget("original"), setup, lambda ks: m.encode_prompts(ks), ["sandal"] * 2,
                       [1000, 1001])
    same = images_for(m, AttackTarget("original"), setup, lambda ks: add_direction(encode(m, ks), d, 0.0),
                      ["sandal"] * 2, [1000, 1001])
    assert torch.equal(clean, same)
    seeds = [1000, 1001, 1002, 1003]
    cfgs = AttackConfigs(soft=SoftPromptConfig(steps=3, pyramids=2))
    vec = run_attack(m, "vector", "anchor", AttackTarget("original"), sneaker, judge, 1, seeds, [0], cfgs)
    assert vec.asr_unattacked == 0.0 and vec.asr == 1.0
    soft = run_attack(m, "soft", "target", AttackTarget("original"), sneaker, judge, 1, seeds, [0], cfgs)
    assert soft.extra["config"]["mode"] == "ball" and soft.asr == 1.0
    assert soft.extra["objective"][-1] > soft.extra["objective"][0]
    disc = run_attack(m, "discrete", "target", AttackTarget("original"), sneaker, judge, 1, seeds, [0], cfgs)
    assert disc.extra["not_applicable"] and disc.asr != disc.asr   # NaN: shown as n/a in the table
