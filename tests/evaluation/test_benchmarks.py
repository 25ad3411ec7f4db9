"""Benchmarks behind ``sace evaluate --benchmark``: prompt selection and the end-to-end command on the tiny
fixture."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from sace.errors import SaceError
from sace.evaluation.benchmarks import imagenette_items, load_benchmark_prompts, prompts_dir
from tests.evaluation.test_clip_score import tiny_clip
from tests.helpers import SHARED_DIR, TESTS

SHARED = SHARED_DIR / "data" / "prompts"
DATA = TESTS / "data" / "prompts"
needs_shared = pytest.mark.skipif(not (SHARED / "unsafe-prompts4703.csv").is_file(),
                                  reason="shared/data/prompts not beside the checkout")


@needs_shared
def test_i2p_sexual_selects_the_931_prompts_with_their_seeds():
    ps = load_benchmark_prompts("i2p-sexual", folder=SHARED)
    assert len(ps) == 931
    with (SHARED / "unsafe-prompts4703.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    want = [i for i, r in enumerate(rows) if "sexual" in [c.strip() for c in r["categories"].split(",")]]
    assert ps.rows == want
    assert ps.seeds == [int(rows[i]["evaluation_seed"]) for i in want]
    assert len(load_benchmark_prompts("i2p-sexual", limit=5, folder=SHARED)) == 5


@needs_shared
def test_imagenette_prompts_interleave_classes_and_coco_keeps_file_order():
    ps = load_benchmark_prompts("imagenette", folder=SHARED)
    assert len(ps) == 100 and len(set(ps.labels)) == 10
    assert all(ps.labels.count(c) == 10 for c in set(ps.labels))
    four = load_benchmark_prompts("imagenette", limit=4, folder=SHARED)
    # classes in the file's order (cassette player, chain saw, church, gas pump, ...), first seed of each
    assert four.labels == ["cassette player", "chain saw", "church", "gas pump"]
    assert four.prompts[2] == "Image of church" and four.seeds == [ps.seeds[0], ps.seeds[1], ps.seeds[2], ps.seeds[3]]
    assert four.rows == [0, 10, 20, 30]
    items = imagenette_items(four, erased=[497])
    assert [it.label for it in items] == [482, 491, 497, 571]
    assert [it.group for it in items] == ["other", "other", "target", "other"]
    coco = load_benchmark_prompts("coco", limit=3, folder=SHARED)
    assert coco.prompts[0] == "A bicycle replica with a clock as the front wheel." and coco.seeds[0] == 41337


def test_benchmark_errors(tmp_path):
    with pytest.raises(SaceError, match="unknown benchmark"):
        load_benchmark_prompts("cifar")
    with pytest.raises(SaceError, match="prompt folder not found"):
        prompts_dir(tmp_path)
    with pytest.raises(SaceError, match="--limit"):
        load_benchmark_prompts("coco", limit=0)


def _evaluate(args, capsys):
    from sace import cli

    with pytest.raises(SystemExit) as e:
        cli.app(["evaluate", "--model", "infinity-tiny-fixture", "--device", "cpu", *args])
    return e.value.code, capsys.readouterr()


@needs_shared
@pytest.mark.slow
def test_evaluate_imagenette_benchmark_end_to_end(tmp_path, capsys):
    code, out = _evaluate(["--benchmark", "imagenette", "--limit", "4", "--concept", "church",
                           "--prompts-dir", str(SHARED), "--out", str(tmp_path / "ev")], capsys)
    assert code == 0, out.err
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["benchmark"]["benchmark"] == "imagenette" and m["benchmark"]["erased"] == [497]
    r = m["methods"]["original"]
    assert r["n_images"] == 4 and 0 <= r["acc_e"] <= 1 and 0 <= r["acc_i"] <= 1
    assert set(r["per_class"]) == {"482", "491", "497", "571"}
    assert (tmp_path / "ev" / "table.md").is_file() and (tmp_path / "ev" / "report.html").is_file()


@pytest.mark.slow
def test_evaluate_i2p_and_coco_benchmarks_end_to_end(tmp_path, capsys):
    # benign stand-ins under the benchmark file names (the real I2P stays out of test runs)
    d = tmp_path / "prompts"
    d.mkdir()
    shutil.copy(DATA / "i2p_mini.csv", d / "unsafe-prompts4703.csv")
    (d / "coco_30k.csv").write_text("image_id,source,prompt,evaluation_seed\n1,coco-30k,A red bus on a street.,5\n"
                                    "2,coco-30k,Two dogs playing in the snow.,6\n3,coco-30k,A bowl of soup.,7\n")
    code, out = _evaluate(["--benchmark", "i2p-sexual", "--limit", "2", "--nudenet-threshold", "0.5",
                           "--prompts-dir", str(d), "--out", str(tmp_path / "i2p")], capsys)
    assert code == 0, out.err
    m = json.loads((tmp_path / "i2p" / "metrics.json").read_text())
    nn = m["methods"]["original"]["nudenet"]
    assert m["benchmark"]["n_prompts"] == 2 and nn["threshold"] == 0.5 and nn["n_images"] == 2
    assert set(nn["counts"]) >= {"FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"}
    tiny_clip(tmp_path)
    code, out = _evaluate(["--benchmark", "coco", "--limit", "3", "--clip-model", str(tmp_path / "clip"),
                           "--concept", "church", "--methods", "negprompt", "--prompts-dir", str(d),
                           "--out", str(tmp_path / "coco")], capsys)
    assert code == 0, out.err
    m = json.loads((tmp_path / "coco" / "metrics.json").read_text())
    orig, neg = m["methods"]["original"], m["methods"]["negative prompt"]
    assert 0 <= orig["clip_score"] <= 100 and 0 <= neg["clip_score"] <= 100
    assert neg["fid_to_original"] >= 0 and neg["kid_to_original"] == neg["kid_to_original"]
    assert "fid_to_original" not in orig


def test_benchmark_rejects_its_own_prompts_twice_and_a_concept_it_cannot_score():
    from sace.domains.presets.files import load_preset
    from sace.evaluation.benchmarks import prepare_benchmark
    from sace.evaluation.runner import EvalRequest

    with pytest.raises(SaceError, match="brings its own prompts"):
        prepare_benchmark(None, EvalRequest(benchmark="coco", prompts_file="x.csv"), None)
    if (SHARED / "small_imagenet_prompts.csv").is_file():
        with pytest.raises(SaceError, match="not an Imagenette class"):
            prepare_benchmark(None, EvalRequest(benchmark="imagenette", prompts_dir=str(SHARED)),
                              load_preset("vangogh"))
