"""Reporting: tables, plots, grids, the self-contained HTML page and the Chromium screenshot."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from sace import reporting
from sace.errors import SaceError
from sace.reporting import (
    DPI,
    MISSING,
    Report,
    heatmaps_figsize,
    html_table,
    markdown_table,
    plot_bars,
    plot_curves,
    plot_heatmaps,
    plot_lines_over_steps,
    save_grid,
    screenshot,
)

ROWS = [
    {"method": "SACE", "ACC_e": 0.05, "FID": 12.3456, "n": 5},
    {"method": "ESD", "ACC_e": float("nan"), "FID": 10.1, "n": None},
    {"method": "a|b <x>", "ACC_e": torch.tensor(0.2), "FID": None},
]


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        size = im.size
    with Image.open(path) as im:
        im.verify()
    return size


def _px(figsize, dpi=DPI):
    return round(figsize[0] * dpi), round(figsize[1] * dpi)


def _only(tmp_path):
    """Every entry of tmp_path (recursively): atomic writes must leave no temporary files."""
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- tables
def test_markdown_table_missing_values_highlight_and_alignment():
    md = markdown_table(ROWS, highlight={"ACC_e": "min", "FID": "max"})
    lines = md.strip().split("\n")
    assert lines[0] == "| method | ACC_e | FID | n |"
    assert lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == "| SACE | **0.050** | **12.346** | 5 |"
    assert lines[3] == f"| ESD | {MISSING} | 10.100 | {MISSING} |"
    assert lines[4] == f"| a\\|b <x> | 0.200 | {MISSING} | {MISSING} |"
    assert MISSING == "\u2013"


def test_markdown_table_columns_formats_ties_and_errors():
    rows = [{"a": 1.0, "b": 2}, {"a": 1.0, "b": 3, "c": "x"}]
    md = markdown_table(rows, columns=["b", "a"], floatfmt={"a": "{:.1%}"}, highlight={"a": "max"})
    assert md.split("\n")[2:4] == ["| 2 | **100.0%** |", "| 3 | **100.0%** |"]  # ties are all bold
    assert "c" in markdown_table(rows).split("\n")[0]  # union of keys in order of appearance
    assert markdown_table([]) == "(no rows)\n"
    assert markdown_table([], columns=["x"]).startswith("| x |")
    with pytest.raises(SaceError, match="min' or 'max"):
        markdown_table(rows, highlight={"a": "best"})
    with pytest.raises(SaceError, match="not in the table"):
        markdown_table(rows, highlight={"zzz": "min"})
    with pytest.raises(SaceError, match="dict"):
        markdown_table([[1, 2]])
    # all-missing highlighted column: nothing bold, no crash
    assert "**" not in markdown_table([{"a": None}, {"a": float("nan")}], highlight={"a": "min"})


def test_html_table_escapes_and_marks_best():
    h = html_table(ROWS, highlight={"FID": "min"}, caption="results <1>")
    assert "<caption>results &lt;1&gt;</caption>" in h
    assert "a|b &lt;x&gt;" in h and "<x>" not in h
    assert '<td class="num best"><b>10.100</b></td>' in h
    assert h.count(MISSING) == 4  # NaN, None and a missing key


# --------------------------------------------------------------------------------------------- plots
def test_plot_curves_png_size_and_errors(tmp_path):
    x = list(range(6))
    series = {"A(k)": {"mean": [0.1, 0.3, 0.6, 0.8, 0.9, 0.95], "lo": [0.0, 0.2, 0.5, 0.7, 0.85, 0.9],
                       "hi": [0.2, 0.4, 0.7, 0.9, 0.95, 1.0]},
              "B(k)": {"mean": [0.9, 0.7, float("nan"), 0.2, 0.1, 0.05], "lo": None, "hi": None}}
    p = plot_curves(x, series, tmp_path / "c.png", xlabel="k", ylabel="rate", title="ISSA", ylim=(0, 1))
    assert p == tmp_path / "c.png"
    assert _png_size(p) == _px((6.4, 4.0))
    assert _only(tmp_path) == ["c.png"]
    with pytest.raises(SaceError, match="has 2 values"):
        plot_curves(x, {"a": {"mean": [1, 2]}}, tmp_path / "bad.png")
    with pytest.raises(SaceError, match="no 'mean'"):
        plot_curves(x, {"a": {"lo": x}}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_bars_grouped_with_errors(tmp_path):
    cats = [f"class {i}" for i in range(10)]
    p = plot_bars(cats, {"before": [0.9] * 10, "after": [0.1] + [0.88] * 9}, tmp_path / "b.png",
                  ylabel="accuracy", errors={"after": [0.02] * 10}, figsize=(5.0, 3.0), dpi=100)
    assert _png_size(p) == (500, 300)
    with pytest.raises(SaceError, match="unknown series"):
        plot_bars(cats, {"a": [1] * 10}, tmp_path / "x.png", errors={"b": [0] * 10})


def test_plot_heatmaps_mixed_grid_sizes(tmp_path):
    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(s, s, generator=g) for s in (1, 2, 3, 4, 6, 8)] + [np.arange(12.0).reshape(3, 4)]
    titles = [f"k={i}" for i in range(len(maps))]
    p = plot_heatmaps(maps, titles, tmp_path / "h.png", suptitle="saliency per scale")
    assert _png_size(p) == _px(heatmaps_figsize(len(maps), suptitle=True))
    p2 = plot_heatmaps(maps[:3], None, tmp_path / "h2.png", shared_scale=True, cmap="viridis", ncols=3)
    assert _png_size(p2) == _px(heatmaps_figsize(3, 3))
    assert heatmaps_figsize(13)[0] == heatmaps_figsize(5)[0]  # 13 panels -> rows of 5
    with pytest.raises(SaceError, match="2-D"):
        plot_heatmaps([torch.zeros(4)], ["x"], tmp_path / "bad.png")
    with pytest.raises(SaceError, match="titles"):
        plot_heatmaps([torch.zeros(2, 2)], ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(SaceError, match="no maps"):
        plot_heatmaps([], [], tmp_path / "bad.png")


def test_plot_lines_over_steps(tmp_path):
    logs = {"loss": [math.exp(-i / 20) for i in range(60)], "entropy": [1.0 + 0.1 * (i % 3) for i in range(40)]}
    p = plot_lines_over_steps(logs, tmp_path / "l.png", smooth=0.8, logy=True, title="training")
    assert _png_size(p) == _px((6.4, 4.0))
    p = plot_lines_over_steps(logs, tmp_path / "l2.png", separate=True, steps={"loss": list(range(0, 120, 2))})
    assert _png_size(p) == _px((6.4, 2.6))
    with pytest.raises(SaceError, match="steps"):
        plot_lines_over_steps({"a": [1, 2, 3]}, tmp_path / "bad.png", steps=[0, 1])
    with pytest.raises(SaceError, match="smooth"):
        plot_lines_over_steps({"a": [1, 2, 3]}, tmp_path / "bad.png", smooth=1.0)


# --------------------------------------------------------------------------------------------- grids
def test_save_grid_plain_layout_is_exact(tmp_path):
    imgs = torch.zeros(5, 3, 8, 8)
    imgs[:, 0] = torch.linspace(0, 1, 5).view(5, 1, 1)  # image i: red = i/4
    imgs[4, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # one green pixel at the top-left of image 4
    p = save_grid(imgs, nrow=3, path=tmp_path / "g.png", upscale=4, pad=2)
    assert _png_size(p) == (2 + 3 * (32 + 2), 2 + 2 * (32 + 2))
    arr = np.asarray(Image.open(p).convert("RGB"))
    assert tuple(arr[0, 0]) == (255, 255, 255)  # padding is white
    x0, y0 = 2 + 1 * 34, 2 + 1 * 34  # image 4: row 1, column 1
    assert (arr[y0:y0 + 4, x0:x0 + 4] == (0, 255, 0)).all()  # the green pixel became a 4x4 block
    assert tuple(arr[y0 + 10, x0 + 10]) == (255, 0, 0)
    assert tuple(arr[2 + 34 + 5, 2 + 2 * 34 + 5]) == (255, 255, 255)  # empty sixth cell stays white


def test_save_grid_with_labels_and_title(tmp_path):
    imgs = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    p = save_grid(imgs, 3, tmp_path / "g.png", row_labels=["before", "after erasure"],
                  col_labels=["a photo of a sneaker on a white background", "t-shirt", "bag"], title="Grid")
    w, h = _png_size(p)
    assert w > 2 + 3 * 130 and h > 2 + 2 * 130  # room was made for the labels
    arr = np.asarray(Image.open(p).convert("L"))
    plain_w = 2 + 3 * 130
    left = w - plain_w
    assert arr[:, :left].min() < 100  # row labels drew dark text in the left margin
    assert arr[:h - (2 + 2 * 130), left:].min() < 100  # column labels / title above the tiles
    with pytest.raises(SaceError, match="row labels"):
        save_grid(imgs, 3, tmp_path / "bad.png", row_labels=["x"])
    with pytest.raises(SaceError, match="column labels"):
        save_grid(imgs, 3, tmp_path / "bad.png", col_labels=["x"])
    with pytest.raises(SaceError, match="shape"):
        save_grid(torch.rand(3, 32, 32), 3, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "g.png"
    save_grid(torch.zeros(1, 3, 4, 4), 1, target)
    before = target.read_bytes()
    real_save = Image.Image.save

    def broken_save(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(SaceError, match="disk full"):
        save_grid(torch.ones(1, 3, 4, 4), 1, target)
    assert target.read_bytes() == before
    assert _only(tmp_path) == ["g.png"]


# -------------------------------------------------------------------------------------------- report
def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _build_report(tmp_path):
    import matplotlib.figure

    red = torch.zeros(3, 32, 32)
    red[0] = 1.0
    Image.new("RGB", (20, 10), (0, 0, 255)).save(tmp_path / "blue.jpg")  # a non-PNG file gets converted
    plot_bars(["a", "b"], {"s": [1, 2]}, tmp_path / "bars.png")
    fig = matplotlib.figure.Figure(figsize=(2, 1))
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    rep = Report("Erase <sneaker>", subtitle="run 1")
    rep.heading("Results").text("first <b>not bold</b> & more\n\nsecond paragraph")
    rep.table(ROWS, caption="main table", highlight={"FID": "min"})
    rep.image(red, caption="red square")
    with rep.section("Plots", level=2):
        rep.image(tmp_path / "bars.png", caption="bars", width=400)
        rep.image(tmp_path / "blue.jpg")
        rep.figure(fig, caption="a matplotlib figure")
        rep.image(torch.full((16, 16), 0.5))
    rep.kv({"lr": 1e-4, "scales": [0, 1, 2], "steps": torch.tensor(300)}, caption="settings")
    rep.details("raw metrics", {"acc": [0.1, 0.2], "note": "<script>x</script>"})
    return rep


def test_report_html_is_one_self_contained_file(tmp_path):
    rep = _build_report(tmp_path)
    out = rep.write(tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html"
    assert [p for p in _only(tmp_path) if p.startswith("out/")] == ["out/report.html"]  # no temp files
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    # embedded images only: 5 PNG data URIs, every one a decodable PNG; no external resources, no JS
    uris = _data_uris(page)
    assert len(uris) == page.count("<img ") == 5
    ims = [Image.open(io.BytesIO(b)) for b in uris]
    assert all(im.format == "PNG" for im in ims)
    assert ims[0].convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    assert ims[2].size == (20, 10) and ims[2].convert("RGB").getpixel((10, 5))[2] > 200
    for bad in ('src="http', "src='http", 'href="http', "<link", "<script", "url(", "@import", "file://"):
        assert bad not in page
    # the table values, escaped text and highlight
    for value in ("12.346", "10.100", "0.050", "main table", MISSING, "0.0001", "[0, 1, 2]", "300"):
        assert value in page
    assert "<b>10.100</b>" in page
    assert "first &lt;b&gt;not bold&lt;/b&gt; &amp; more" in page
    assert "<h1>Erase &lt;sneaker&gt;</h1>" in page and "<section>" in page
    assert "<details><summary>raw metrics</summary>" in page and "&lt;script&gt;" in page
    assert 'width="400"' in page and 'class="px"' in page  # tiny images are shown enlarged, pixelated


def test_report_markdown(tmp_path):
    rep = _build_report(tmp_path)
    md_path = rep.write_markdown(tmp_path / "out" / "report.md")
    md = md_path.read_text()
    assert md.startswith("# Erase &lt;sneaker&gt;\n")
    assert "## Results" in md and "## Plots" in md
    assert "first &lt;b&gt;not bold&lt;/b&gt; & more" in md
    assert markdown_table(ROWS, highlight={"FID": "min"}).strip() in md
    assert "![bars](../bars.png)" in md and "![blue.jpg](../blue.jpg)" in md
    assert "data:image" not in md  # tensor / figure images are omitted from markdown
    assert "<details><summary>raw metrics</summary>" in md and '"acc": [' in md


def test_tensor_to_pil_ranges():
    assert reporting.tensor_to_pil(torch.full((2, 2), 2.0)).getpixel((0, 0)) == (255, 255, 255)  # clamped
    assert reporting.tensor_to_pil(torch.full((3, 2, 2), 128, dtype=torch.uint8)).getpixel((1, 1)) == (128,) * 3
    assert reporting.tensor_to_pil(np.zeros((1, 3, 5))).size == (5, 3)


def test_report_input_errors(tmp_path):
    rep = Report("x")
    with pytest.raises(SaceError, match="not found"):
        rep.image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(SaceError, match="not a readable image"):
        rep.image(tmp_path / "junk.png")
    with pytest.raises(SaceError, match="shape"):
        rep.image(torch.zeros(2, 3, 8, 8))
    with pytest.raises(SaceError, match="NaN"):
        rep.image(torch.full((3, 4, 4), float("nan")))
    with pytest.raises(SaceError, match="level"):
        rep.heading("h", level=7)
    with pytest.raises(SaceError, match="Figure"):
        rep.figure("not a figure")
    with pytest.raises(SaceError, match="min' or 'max"):
        rep.table(ROWS, highlight={"FID": "lowest"})


# ----------------------------------------------------------------------------------------- screenshot
def test_screenshot_without_chromium_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "r.html").write_text("<html></html>")
    monkeypatch.setattr(reporting, "find_chromium", lambda: None)
    with pytest.raises(SaceError, match="apt-get install chromium"):
        screenshot(tmp_path / "r.html", tmp_path / "s.png")
    with pytest.raises(SaceError, match="not found"):
        screenshot(tmp_path / "missing.html", tmp_path / "s.png")


@pytest.mark.skipif(reporting.find_chromium() is None, reason="Chromium is not installed")
def test_screenshot_renders_embedded_red_image(tmp_path):
    red = torch.zeros(3, 32, 32)
    red[0] = 1.0
    rep = Report("screenshot").text("a red square follows").image(red, caption="red", width=200)
    html_path = rep.write(tmp_path / "r.html")
    png = screenshot(html_path, tmp_path / "shot.png", width=640, height=480, timeout=180)
    assert _only(tmp_path) == ["r.html", "shot.png"]
    im = Image.open(png).convert("RGB")
    assert im.size == (640, 480)
    arr = np.asarray(im).astype(int)
    red_px = (arr[..., 0] > 220) & (arr[..., 1] < 40) & (arr[..., 2] < 40)
    assert red_px.sum() > 150 * 150  # the 200x200 red square (minus borders, scaled by DPR >= 1)
