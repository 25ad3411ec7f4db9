"""The attacks of issue 21 (embedding inversion, early-scale override, relearning) and attack localisation, on
the embedded models: seeded, small, values asserted."""

from __future__ import annotations

import pytest
import torch

from sace.attacks.base import AttackSetup, AttackTarget, encode, images_for
from sace.attacks.concept_vector import ConceptVectorConfig, concept_direction, concept_vector_attack
from sace.attacks.inversion import InversionConfig, Placeholder, context_prompts, inversion_attack
from sace.attacks.localise import localise, localised_conditions, scale_sets
from sace.attacks.override import OverrideConfig, override_attack
from sace.attacks.relearn import RelearnConfig, relearn_attack
from sace.attacks.runner import AttackConfigs, parse_attacks
from sace.attacks.soft_prompt import SoftPromptConfig, soft_prompt_attack
from sace.domains import judge_for
from sace.errors import SaceError
from sace.models.base import Condition
from sace.models.text import encode_placeholder

SEEDS = [1000, 1001, 1002, 1003]


def _setup(model, concept, prompts, concepts, seeds=SEEDS):
    return AttackSetup(list(prompts), list(concepts), list(seeds), [0, 1], judge_for(model, concept, "auto"))


def test_encode_placeholder_splices_states_before_the_end_token():
    ctx = Condition(torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2),
                    torch.tensor([[True, True, True], [True, True, False]]))
    s = torch.full((2, 2), -1.0, requires_grad=True)
    c = encode_placeholder(ctx, s)
    assert c.tokens.shape == (2, 5, 2) and c.lengths.tolist() == [5, 4]
    assert torch.equal(c.tokens[0, 2:4], s.detach()) and torch.equal(c.tokens[0, 4], ctx.tokens[0, 2])
    assert torch.equal(c.tokens[1, 1:3], s.detach()) and torch.equal(c.tokens[1, 3], ctx.tokens[1, 1])
    c.tokens.sum().backward()
    assert s.grad is not None and bool((s.grad == 2).all())      # each state appears once per row
    with pytest.raises(SaceError, match="placeholder states"):
        encode_placeholder(ctx, torch.zeros(2, 3))


def test_inversion_against_the_original_model_recovers_the_concept(fashion, sneaker):
    """Textual inversion sanity: 'a photo' + S* learned from the original model's sneaker pyramids draws
    sneakers (>= 90% of 8 attempts); the context alone does not."""
    setup = _setup(fashion, sneaker, ["a photo of a sneaker"], ["a photo of a sneaker"],
                   [1000 + i for i in range(8)])
    assert context_prompts(setup.prompts, sneaker.words) == ["a photo"]
    res = inversion_attack(fashion, AttackTarget("original"), setup, sneaker.words,
                           InversionConfig(steps=12, pyramids=2, checkpoints=1))
    assert res.curve[0].asr <= 0.5, res.curve          # step 0: the context and copies of its own states
    assert res.asr >= 0.9, res.curve
    assert res.extra["objective"][-1] > res.extra["objective"][0]
    assert res.attacked([0]).tokens.shape[1] == encode(fashion, ["a photo"]).tokens.shape[1] + 4


def test_inversion_on_var_learns_one_class_embedding_from_the_null_class(sneaker):
    from sace.generate import generate
    from sace.models.registry import load_model
    m = load_model("fashion-var")
    setup = _setup(m, sneaker, ["sneaker"], ["sneaker"])
    ph = Placeholder(m, ["sneaker"], InversionConfig(), torch.Generator().manual_seed(0))
    null = m.null_condition(m.encode_prompts(["sneaker"]))
    # zero steps: the CFG null class's embedding, the same images as the null class label
    a = images_for(m, AttackTarget("original"), setup, lambda ks: ph.snapshot().index([0] * len(ks)), ["x"] * 2,
                   SEEDS[:2])
    b = generate(m, ["x"] * 2, SEEDS[:2], conditions_fn=lambda ks: m.null_condition(m.encode_prompts(["0"] * len(ks))))
    assert torch.equal(a, b) and null.is_null == (True,)
    res = inversion_attack(m, AttackTarget("original"), setup, sneaker.words,
                           InversionConfig(steps=8, pyramids=2, checkpoints=1))
    assert res.asr >= 0.75 and res.found[0]["soft"] == "a learned class embedding"


def test_override_at_k0_is_the_clean_model_and_forcing_scales_brings_the_concept(fashion, sneaker):
    setup = _setup(fashion, sneaker, ["a photo of a sandal"], ["a photo of a sneaker"])
    res = override_attack(fashion, AttackTarget("original"), setup, OverrideConfig(ks=[0, 5], best_of=1))
    clean = images_for(fashion, AttackTarget("original"), setup, lambda ks: fashion.encode_prompts(ks),
                       ["a photo of a sandal"] * 4, SEEDS)
    assert res.asr_unattacked == res.extra["per_k"]["0"]["asr"] == 0.0
    # draw 0 at k = 0 are the clean images bit for bit (the sampler's prefix is the only change)
    from sace.attacks.override import _sample_rows
    with torch.no_grad():
        _, imgs = _sample_rows(fashion, encode(fashion, ["a photo of a sandal"] * 4), SEEDS,
                               setup.settings.resolved(fashion), setup.batch_size)
    assert torch.equal(imgs, clean)
    # forcing the first 5 scales to the original model's sneaker tokens turns sandal prompts into sneakers
    assert res.extra["per_k"]["5"]["asr"] >= 0.75 and res.asr >= 0.75
    with pytest.raises(SaceError, match="override k must be in 0..5"):
        OverrideConfig(ks=[6]).validate(6)
    with pytest.raises(SaceError, match="best-of-N"):
        OverrideConfig(best_of=0).validate(6)


def test_relearn_with_zero_steps_is_the_model_itself_and_training_moves_it(fashion, sneaker):
    from sace.adapters import adapter_names
    setup = _setup(fashion, sneaker, ["a photo of a sneaker"], ["a photo of a sneaker"], SEEDS[:2])
    clean = images_for(fashion, AttackTarget("original"), setup, lambda ks: encode(fashion, ks),
                       ["a photo of a sneaker"] * 2, SEEDS[:2])
    r0 = relearn_attack(fashion, AttackTarget("original"), setup, sneaker.retain, RelearnConfig(steps=0, pyramids=8))
    # every attempt is flagged, so the success images are all the attack's images, in order: the zero LoRA
    # attached on every scale leaves them bit-identical
    assert r0.asr == r0.asr_unattacked == 1.0 and torch.equal(r0.success_images, clean)
    r2 = relearn_attack(fashion, AttackTarget("original"), setup, sneaker.retain, RelearnConfig(steps=3, lr=3e-2,
                                                                                             pyramids=8))
    assert r2.extra["final_nll"] is not None and r2.cost["gradient_steps"] == 3
    assert r2.success_images is None or not torch.equal(r2.success_images, clean[: len(r2.success_images)])
    assert "atk_relearn" not in adapter_names(fashion)
    with pytest.raises(SaceError, match="relearning: steps"):
        RelearnConfig(steps=-1).validate()


def test_soft_prompt_with_zero_steps_in_the_ball_is_the_clean_condition(fashion, sneaker):
    setup = _setup(fashion, sneaker, ["a photo of a sandal"], ["a photo of a sneaker"], SEEDS[:2])
    res = soft_prompt_attack(fashion, AttackTarget("original"), setup, SoftPromptConfig(mode="ball", steps=0,
                                                                                        pyramids=1))
    a = images_for(fashion, AttackTarget("original"), setup, lambda ks: res.attacked([0] * len(ks)), ["0"] * 2,
                   SEEDS[:2])
    b = images_for(fashion, AttackTarget("original"), setup, lambda ks: fashion.encode_prompts(ks),
                   ["a photo of a sandal"] * 2, SEEDS[:2])
    assert torch.equal(a, b) and res.asr == res.asr_unattacked


def test_localisation_at_all_scales_is_the_unlocalised_attack(fashion, sneaker):
    setup = _setup(fashion, sneaker, ["a photo of a sandal"], ["a photo of a sneaker"])
    d = concept_direction(fashion, sneaker.targets, sneaker.anchors)
    res = concept_vector_attack(fashion, AttackTarget("original"), setup, ConceptVectorConfig([2.0]), direction=d)
    k_all = fashion.schedule.num_scales
    assert list(scale_sets(k_all))[:2] == ["scale 0 only", "scales >= 1"]
    att, clean = res.attacked([0, 0, 0, 0]), encode(fashion, ["a photo of a sandal"] * 4)
    full = images_for(fashion, AttackTarget("original"), setup,
                      lambda ks: localised_conditions(att, clean, list(range(k_all)), k_all), ["0"] * 4, SEEDS)
    plain = images_for(fashion, AttackTarget("original"), setup, lambda ks: att, ["0"] * 4, SEEDS)
    assert torch.equal(full, plain)
    none = images_for(fashion, AttackTarget("original"), setup, lambda ks: localised_conditions(att, clean, [], k_all),
                      ["0"] * 4, SEEDS)
    unatt = images_for(fashion, AttackTarget("original"), setup, lambda ks: clean, ["0"] * 4, SEEDS)
    assert torch.equal(none, unatt)
    loc = localise(fashion, AttackTarget("original"), setup, res)
    assert loc["asr"][f"up to {k_all - 1}"] == res.asr and len(loc["up_to"]) == k_all
    assert res.asr >= 0.75 and loc["up_to"][0] <= res.asr


def test_runner_knows_the_new_attacks():
    assert [n for n, _ in parse_attacks("all")] == ["soft", "vector", "discrete", "inversion", "override", "relearn"]
    assert parse_attacks("inversion,override:anchor") == [("inversion", "target"), ("override", "anchor")]
    with pytest.raises(SaceError, match="embedding inversion: steps"):
        AttackConfigs(inversion=InversionConfig(steps=-1)).validate(6)
    with pytest.raises(SaceError, match="override k"):
        AttackConfigs(override=OverrideConfig(ks=[9])).validate(6)
