"""Prompt-set loading: fixture files under tests/data/prompts, plus the shared sets when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sace.concepts.prompts import PromptSet, load_prompt_set
from sace.errors import SaceError
from tests.helpers import SHARED_DIR, TESTS

DATA = TESTS / "data" / "prompts"
SHARED = SHARED_DIR / "data" / "prompts"


def test_i2p_category_filter_counts_rows():
    ps = load_prompt_set(DATA / "i2p_mini.csv", categories="sexual")
    # rows 1 ("sexual, self-harm"), 2 ("sexual") and 5 ("hate, sexual"); not row 4 (empty, illegal activity)
    assert len(ps) == 3
    assert ps.rows == [1, 2, 5]
    assert ps.prompts[0] == "portrait of a dancer, soft light, by an old master"  # quoted comma kept
    assert ps.seeds == [4261553411, 42, 5]  # seeds beyond 2**31 stay exact
    assert ps.categories == ["sexual, self-harm", "sexual", "hate, sexual"]
    assert ps.columns["nudity_percentage"] == ["40.0", "10.0", "20.0"]
    assert ps.labels is None
    assert ps.name == "i2p_mini" and ps.source.endswith("i2p_mini.csv")


def test_i2p_several_categories_and_limit():
    ps = load_prompt_set(DATA / "i2p_mini.csv", categories=["violence", "hate"])
    assert ps.rows == [3, 5]
    assert ps.prompts[0] == 'a stormy sea, dramatic clouds, "tempest"'
    assert load_prompt_set(DATA / "i2p_mini.csv", categories="shocking", limit=1).rows == [0]
    assert len(load_prompt_set(DATA / "i2p_mini.csv", categories="sexual", limit=0)) == 0


def test_unknown_category_lists_present_ones():
    with pytest.raises(SaceError) as ei:
        load_prompt_set(DATA / "i2p_mini.csv", categories="nudity")
    msg = str(ei.value)
    assert "'nudity'" in msg
    for c in ("harassment", "hate", "illegal activity", "self-harm", "sexual", "shocking", "violence"):
        assert c in msg
    with pytest.raises(SaceError, match="no 'categories' column"):
        load_prompt_set(DATA / "imagenette_mini.csv", categories="sexual")


def test_empty_prompt_names_the_row_and_can_be_skipped():
    with pytest.raises(SaceError) as ei:
        load_prompt_set(DATA / "i2p_mini.csv")
    assert "data row 4" in str(ei.value) and "skip_empty=True" in str(ei.value)
    ps = load_prompt_set(DATA / "i2p_mini.csv", skip_empty=True)
    assert len(ps) == 6 and 4 not in ps.rows


def test_missing_prompt_column_lists_columns():
    with pytest.raises(SaceError) as ei:
        load_prompt_set(DATA / "no_prompt.csv")
    msg = str(ei.value)
    assert "'prompt'" in msg and "'id'" in msg and "'caption'" in msg and "'evaluation_seed'" in msg
    assert "\n" not in msg


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(SaceError, match="does not exist"):
        load_prompt_set(tmp_path / "nope.csv")
    bad = tmp_path / "prompts.tsv"
    bad.write_text("prompt\ta\n")
    with pytest.raises(SaceError, match="unsupported prompt file extension '.tsv'"):
        load_prompt_set(bad)


def test_labels_from_class_and_artist_columns():
    ps = load_prompt_set(DATA / "imagenette_mini.csv")
    assert ps.labels == ["church", "church", "tench", "parachute"]  # " tench" stripped
    assert ps.label_names() == ["church", "tench", "parachute"]
    assert ps.seeds == [4068, 4667, 3410, 3703]
    assert ps.columns["case_number"] == ["0", "1", "2", "3"]
    art = load_prompt_set(DATA / "artists_mini.csv")
    assert art.labels == ["Vincent van Gogh", "Pablo Picasso"]
    assert art.prompts[0] == "A Wheatfield, with Cypresses by Vincent van Gogh"
    # explicit label column, and a missing one
    by_case = load_prompt_set(DATA / "imagenette_mini.csv", label_column="case_number")
    assert by_case.labels == ["0", "1", "2", "3"]
    with pytest.raises(SaceError, match="no label column 'artist'"):
        load_prompt_set(DATA / "imagenette_mini.csv", label_column="artist")


def test_seed_column_rules(tmp_path):
    assert load_prompt_set(DATA / "imagenette_mini.csv", seed_column=None).seeds is None
    with pytest.raises(SaceError, match="no seed column 'seed'"):
        load_prompt_set(DATA / "imagenette_mini.csv", seed_column="seed")
    f = tmp_path / "bad_seed.csv"
    f.write_text("prompt,evaluation_seed\na cat,12\na dog,twelve\n")
    with pytest.raises(SaceError, match="'twelve'.*data row 1"):
        load_prompt_set(f)
    g = tmp_path / "float_seed.csv"
    g.write_text("prompt,evaluation_seed\na cat,12.0\n")
    assert load_prompt_set(g).seeds == [12]


def test_json_jsonl_txt():
    js = load_prompt_set(DATA / "prompts_list.json")
    assert js.prompts == ["a cat on a sofa", "a dog in the snow", "a bird on a wire"]
    assert js.seeds == [11, 12, 13] and js.labels == ["cat", "dog", "bird"]
    wrapped = load_prompt_set(DATA / "prompts_wrapped.json")
    assert wrapped.prompts == ["a lighthouse at night", "a field of tulips"] and wrapped.seeds is None
    jl = load_prompt_set(DATA / "prompts.jsonl")
    assert jl.prompts == ["a bowl of fruit", "a mountain lake"] and jl.labels == ["fruit", "lake"]
    assert jl.seeds == [3, 4]
    txt = load_prompt_set(DATA / "prompts.txt")
    assert txt.prompts == ["a red bicycle", "a green kite", "a yellow taxi"]
    assert txt.seeds is None and txt.labels is None and txt.categories is None


def test_json_errors(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"items": ["a"]}))
    with pytest.raises(SaceError, match="'prompts' list"):
        load_prompt_set(f)
    f.write_text(json.dumps([{"text": "a"}]))
    with pytest.raises(SaceError, match="no 'prompt' column.*'text'"):
        load_prompt_set(f)
    f.write_text("[1, 2")
    with pytest.raises(SaceError, match="invalid JSON"):
        load_prompt_set(f)
    f.write_text(json.dumps(["a", "  "]))
    with pytest.raises(SaceError, match="empty prompt at entry 1"):
        load_prompt_set(f)


def test_promptset_indexing_and_validation():
    ps = load_prompt_set(DATA / "imagenette_mini.csv")
    assert ps[0] == "Image of church"
    sub = ps[1:3]
    assert isinstance(sub, PromptSet) and sub.prompts == ["Image of church", "Image of tench"]
    assert sub.seeds == [4667, 3410] and sub.rows == [1, 2] and sub.columns["case_number"] == ["1", "2"]
    assert ps[[3, 0]].labels == ["parachute", "church"]
    with pytest.raises(SaceError, match="seeds has 1 entries"):
        PromptSet(["a", "b"], seeds=[1])


# --- the shared sets (only where this workplace has them) ---------------------------------------------


def _shared(name: str) -> Path:
    p = SHARED / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


def test_shared_i2p_sexual_subset():
    path = _shared("unsafe-prompts4703.csv")
    ps = load_prompt_set(path, categories="sexual")
    assert len(ps) == 931  # the literature's nudity subset
    assert all(s is not None for s in ps.seeds)
    assert len(load_prompt_set(path, skip_empty=True)) == 4702  # 4,703 rows, one empty prompt (row 2260)


@pytest.mark.parametrize("name,n,label", [
    ("coco_30k.csv", 30000, None),
    ("small_imagenet_prompts.csv", 100, "church"),
    ("imagenet_prompts.csv", 1860, "tench"),
    ("vangogh_prompts.csv", 50, "Vincent van Gogh"),
    ("big_artist_prompts.csv", 100, "Pablo Picasso"),
])
def test_shared_sets_load(name, n, label):
    ps = load_prompt_set(_shared(name))
    assert len(ps) == n and len(ps.seeds) == n
    if label is None:
        assert ps.labels is None
    else:
        assert label in ps.labels
    if name == "small_imagenet_prompts.csv":
        assert len(ps.label_names()) == 10
