"""Fashion-MNIST class metadata, caption sets and concept words of the fashion domain."""

from __future__ import annotations

import pytest

from sace.domains.fashion import classes as fcls
from sace.errors import SaceError


def test_class_metadata_order():
    assert fcls.CLASS_NAMES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                              "Sneaker", "Bag", "Ankle boot")
    assert fcls.CLASS_KEYS == ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                             "bag", "ankle_boot")

@pytest.mark.parametrize("concept, idx", [
    ("sneaker", 7), ("Sneaker", 7), ("running shoe", 7), ("Trainers", 7), ("ankle_boot", 9),
    ("Ankle boot", 9), ("ankle boot", 9), ("T-shirt/top", 0), ("t-shirt", 0), ("flip-flop", 5),
    ("jeans", 1), (3, 3), ("8", 8),
])
def test_class_index(concept, idx):
    assert fcls.class_index(concept) == idx

def test_unknown_concept_lists_valid_keys():
    with pytest.raises(SaceError) as e:
        fcls.class_index("hat")
    assert "'hat'" in str(e.value) and ", ".join(fcls.CLASS_KEYS) in str(e.value)
    with pytest.raises(SaceError, match="out of range"):
        fcls.class_index(10)
    with pytest.raises(SaceError):
        fcls.training_captions("umbrella")

def test_canonical_prompts():
    assert fcls.canonical_prompt("sneaker") == "a photo of a sneaker"
    assert fcls.canonical_prompt("sandal") == "a photo of a sandal"
    assert fcls.canonical_prompt("ankle_boot") == "a photo of an ankle boot"
    assert fcls.canonical_prompt("trouser") == "a photo of a pair of trousers"
    assert fcls.canonical_prompt(0) == "a photo of a t-shirt"
    for i in range(10):
        assert fcls.training_captions(i)[0] == fcls.canonical_prompt(i)

def test_caption_sets_counts_and_disjointness():
    train_all = [c for c, _ in fcls.all_training_captions()]
    held_all = [c for c, _ in fcls.all_heldout_captions()]
    assert len(train_all) == len(set(train_all)) == 480
    assert len(held_all) == len(set(held_all)) == 97
    assert not set(train_all) & set(held_all)
    for i in range(10):
        tr, ho = fcls.training_captions(i), fcls.heldout_captions(i)
        assert len(tr) >= 20 and len(ho) >= 8
        assert fcls.canonical_prompt(i) in tr
        assert not set(tr) & set(ho)
    # held-out captions use sentence shapes that no training template produces
    prefixes = [t.split("{}")[0] for t in fcls.TRAINING_TEMPLATES if t.split("{}")[0]]
    assert not any(h.startswith(p) for h in held_all for p in prefixes)
    assert "running shoes on a white background" in fcls.heldout_captions("sneaker")
    assert "an image of an ankle boot" in fcls.training_captions("ankle boot")
    assert "a flip-flop" in fcls.training_captions("sandal")

def test_concept_words_cover_own_class_only():
    for cap, i in fcls.all_training_captions() + fcls.all_heldout_captions():
        for j in range(10):
            assert fcls.mentions_concept(cap, j) == (i == j), (cap, i, j)
    words = fcls.concept_words("sneaker")
    assert {"sneaker", "sneakers", "running shoe", "running shoes", "trainers"} <= set(words)
    assert [len(w) for w in words] == sorted((len(w) for w in words), reverse=True)
    assert not fcls.mentions_concept("a photo of a t-shirt", "shirt")
    assert fcls.mentions_concept("A Photo Of A SHIRT", "shirt")

def test_remove_concept_words():
    assert fcls.remove_concept_words("a photo of a sneaker", "sneaker") == "a photo of a"
    cap = "running shoes on a white background"
    assert fcls.remove_concept_words(cap, "sneaker") == "on a white background"
    assert fcls.remove_concept_words("a t-shirt and a shirt, folded", "shirt") == "a t-shirt and a, folded"
    assert fcls.remove_concept_words("a photo of a bag", "sneaker") == "a photo of a bag"
    for cap in fcls.training_captions("ankle_boot") + fcls.heldout_captions("ankle_boot"):
        assert not fcls.mentions_concept(fcls.remove_concept_words(cap, "ankle_boot"), "ankle_boot")
