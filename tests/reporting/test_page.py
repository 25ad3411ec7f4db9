"""The report page: one self-contained HTML file from the template, and its Markdown form."""

from __future__ import annotations

import base64
import io
import re

import pytest
import torch
from PIL import Image

from sace.errors import SaceError
from sace.reporting import (
    MISSING,
    Report,
    markdown_table,
    plot_bars,
)
from tests.helpers import TABLE_ROWS, files_under


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
    rep.table(TABLE_ROWS, caption="main table", highlight={"FID": "min"})
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
    assert [p for p in files_under(tmp_path) if p.startswith("out/")] == ["out/report.html"]  # no temp files
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
    assert markdown_table(TABLE_ROWS, highlight={"FID": "min"}).strip() in md
    assert "![bars](../bars.png)" in md and "![blue.jpg](../blue.jpg)" in md
    assert "data:image" not in md  # tensor / figure images are omitted from markdown
    assert "<details><summary>raw metrics</summary>" in md and '"acc": [' in md


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
        rep.table(TABLE_ROWS, highlight={"FID": "lowest"})
