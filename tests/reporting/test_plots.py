"""Reporting plots: PNG sizes, grouped bars, heat maps, training logs, input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sace.errors import SaceError
from sace.reporting import (
    heatmaps_figsize,
    plot_bars,
    plot_curves,
    plot_heatmaps,
    plot_lines_over_steps,
)
from tests.helpers import figure_px, files_under, png_size


def test_plot_curves_png_size_and_errors(tmp_path):
    x = list(range(6))
    series = {"A(k)": {"mean": [0.1, 0.3, 0.6, 0.8, 0.9, 0.95], "lo": [0.0, 0.2, 0.5, 0.7, 0.85, 0.9],
                       "hi": [0.2, 0.4, 0.7, 0.9, 0.95, 1.0]},
              "B(k)": {"mean": [0.9, 0.7, float("nan"), 0.2, 0.1, 0.05], "lo": None, "hi": None}}
    p = plot_curves(x, series, tmp_path / "c.png", xlabel="k", ylabel="rate", title="ISSA", ylim=(0, 1))
    assert p == tmp_path / "c.png"
    assert png_size(p) == figure_px((6.4, 4.0))
    assert files_under(tmp_path) == ["c.png"]
    with pytest.raises(SaceError, match="has 2 values"):
        plot_curves(x, {"a": {"mean": [1, 2]}}, tmp_path / "bad.png")
    with pytest.raises(SaceError, match="no 'mean'"):
        plot_curves(x, {"a": {"lo": x}}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_bars_grouped_with_errors(tmp_path):
    cats = [f"class {i}" for i in range(10)]
    p = plot_bars(cats, {"before": [0.9] * 10, "after": [0.1] + [0.88] * 9}, tmp_path / "b.png",
                  ylabel="accuracy", errors={"after": [0.02] * 10}, figsize=(5.0, 3.0), dpi=100)
    assert png_size(p) == (500, 300)
    with pytest.raises(SaceError, match="unknown series"):
        plot_bars(cats, {"a": [1] * 10}, tmp_path / "x.png", errors={"b": [0] * 10})


def test_plot_heatmaps_mixed_grid_sizes(tmp_path):
    g = torch.Generator().manual_seed(0)
    maps = [torch.rand(s, s, generator=g) for s in (1, 2, 3, 4, 6, 8)] + [np.arange(12.0).reshape(3, 4)]
    titles = [f"k={i}" for i in range(len(maps))]
    p = plot_heatmaps(maps, titles, tmp_path / "h.png", suptitle="saliency per scale")
    assert png_size(p) == figure_px(heatmaps_figsize(len(maps), suptitle=True))
    p2 = plot_heatmaps(maps[:3], None, tmp_path / "h2.png", shared_scale=True, cmap="viridis", ncols=3)
    assert png_size(p2) == figure_px(heatmaps_figsize(3, 3))
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
    assert png_size(p) == figure_px((6.4, 4.0))
    p = plot_lines_over_steps(logs, tmp_path / "l2.png", separate=True, steps={"loss": list(range(0, 120, 2))})
    assert png_size(p) == figure_px((6.4, 2.6))
    with pytest.raises(SaceError, match="steps"):
        plot_lines_over_steps({"a": [1, 2, 3]}, tmp_path / "bad.png", steps=[0, 1])
    with pytest.raises(SaceError, match="smooth"):
        plot_lines_over_steps({"a": [1, 2, 3]}, tmp_path / "bad.png", smooth=1.0)
