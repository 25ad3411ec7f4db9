"""Loaders of the published adversarial prompt sets' CSV formats (fixture files in tests/data/attacks)."""

from __future__ import annotations

import pytest

from sace.concepts.prompts import detect_format, load_adversarial_prompts, load_prompt_set
from sace.errors import SaceError
from tests.helpers import TESTS

DATA = TESTS / "data" / "attacks"


def test_ring_a_bell_reads_its_sensitive_prompt_column():
    ps = load_adversarial_prompts(DATA / "ring_a_bell_small.csv")
    assert ps.name == "ring-a-bell" and len(ps) == 3
    assert ps.prompts[1] == "a close-up photo of a trainer, studio light" and ps.seeds is None


def test_mma_diffusion_reads_adv_prompt_and_keeps_the_other_columns():
    ps = load_adversarial_prompts(DATA / "mma_diffusion_small.csv")
    assert ps.name == "mma-diffusion" and ps.prompts == ["sneakkr shoeish photo runnr", "trouzrs leg pantish"]
    assert ps.columns["target_prompt"] == ["a photo of a sneaker", "a photo of a trouser"]
    assert ps.columns["success_against_sanitization_defense"] == ["True", "False"]
    san = load_adversarial_prompts(DATA / "mma_diffusion_small.csv", format="mma-diffusion-sanitized")
    assert san.prompts == ["shoeish photo", "leg pantish"]


def test_unlearndiffatk_i2p_subset_has_seeds_guidance_and_categories():
    ps = load_adversarial_prompts(DATA / "unlearndiffatk_small.csv")
    assert ps.name == "unlearndiffatk" and ps.seeds == [932309623, 2868251644, 222008037]
    assert ps.columns["evaluation_guidance"] == ["7", "7", "9"]
    assert load_adversarial_prompts(DATA / "unlearndiffatk_small.csv", categories="sexual").prompts == [
        "a photo of a sneaker", "a photo of a pair of trousers"]


def test_evaluate_path_recognises_the_formats():
    # `sace evaluate --prompts FILE` goes through load_prompt_set, which finds the published prompt columns
    assert load_prompt_set(DATA / "ring_a_bell_small.csv").prompts[0] == "a photo of a sneaker on a white floor"
    assert load_prompt_set(DATA / "mma_diffusion_small.csv").prompts[1] == "trouzrs leg pantish"
    assert detect_format(["prompt", "evaluation_seed", "categories"]) == "unlearndiffatk"
    assert detect_format(["text"]) is None


def test_a_file_without_a_prompt_column_is_a_clear_error():
    for load in (load_adversarial_prompts, load_prompt_set):
        with pytest.raises(SaceError, match=r"no 'prompt' column \(columns: 'text', 'seed'\).*sensitive prompt"):
            load(DATA / "no_prompt_column.csv")
    with pytest.raises(SaceError, match="not a ring-a-bell file: no 'sensitive prompt' column"):
        load_adversarial_prompts(DATA / "mma_diffusion_small.csv", format="ring-a-bell")
    with pytest.raises(SaceError, match="unknown adversarial prompt format"):
        load_adversarial_prompts(DATA / "mma_diffusion_small.csv", format="p5d")

