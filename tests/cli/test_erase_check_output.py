"""What `sace erase` prints after training: every figure of the check with its interval and verdict, and the
check's verdict (a real erase of the embedded model, two steps, a fixed-size check)."""

from __future__ import annotations

import json
import re

from tests.cli.test_cli import _run

FIG = r"{name} (\d\.\d{{3}}) \[(-?\d\.\d{{3}}), (-?\d\.\d{{3}})\] <= {line} (PASS|FAIL|not decided)"


def test_erase_prints_each_figure_with_its_interval_and_the_verdict(tmp_path):
    out = tmp_path / "ad"
    r = _run("erase", "--concept", "trouser", "--gate", "scale0", "--steps", "2", "--batch-size", "1",
             "--no-audit", "--check-images", "8", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [x for x in r.stdout.splitlines() if x.startswith("check (")]
    assert len(lines) == 1, r.stdout
    line = lines[0]
    # 8 target + 8 held-out images, 4 retain images of each of the 9 other classes, twice (with and without)
    assert line.startswith("check (8 images per set, 88 generated, fashion-classifier, 90% intervals over 1 "
                           "look(s)): ")
    figs = {}
    for name, lim in (("ACC_e", "0.050"), ("held-out", "0.100"), ("ACC_i drop", "0.020")):
        m = re.search(FIG.format(name=re.escape(name), line=re.escape(lim)), line)
        assert m, (name, line)
        est, lo, hi, v = float(m[1]), float(m[2]), float(m[3]), m[4]
        assert lo <= est <= hi, line
        figs[name] = (est, lo, hi, v)
    assert re.search(r"\(ACC_i \d\.\d{3} -> \d\.\d{3}\)", line)
    # two steps of scale-0 training leave trousers: ACC_e's interval lies above 5% and the check fails,
    # naming the figure; 36 retain pairs cannot show a drop <= 2 points
    assert figs["ACC_e"][3] == "FAIL" and figs["ACC_e"][1] > 0.05
    assert figs["ACC_i drop"][3] == "not decided"
    assert re.search(r": FAIL \(ACC_e \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] > 0\.050", line), line
    meta = json.loads((out / "adapter.json").read_text())
    check = meta.get("metadata", meta)["check"]
    assert check["verdict"] == "FAIL" and check["images"] == 88 and check["looks"] == [8]
    assert [f["name"] for f in check["figures"]] == ["ACC_e", "held-out", "ACC_i drop"]


def test_a_bad_check_images_value_is_one_error_line(tmp_path):
    r = _run("erase", "--concept", "trouser", "--check-images", "many", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    err = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(err) == 1 and "--check-images must be 'auto' or a number of images >= 0" in err[0], r.stderr
