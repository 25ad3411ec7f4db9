"""The headless-Chromium screenshot of a report page."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sace import reporting
from sace.errors import SaceError
from sace.reporting import (
    Report,
    screenshot,
)
from tests.helpers import files_under


def test_screenshot_without_chromium_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "r.html").write_text("<html></html>")
    monkeypatch.setattr(reporting.chromium, "find_chromium", lambda: None)
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
    assert files_under(tmp_path) == ["r.html", "shot.png"]
    im = Image.open(png).convert("RGB")
    assert im.size == (640, 480)
    arr = np.asarray(im).astype(int)
    red_px = (arr[..., 0] > 220) & (arr[..., 1] < 40) & (arr[..., 2] < 40)
    assert red_px.sum() > 150 * 150  # the 200x200 red square (minus borders, scaled by DPR >= 1)
