"""Turning results into things people look at: tables (:mod:`.tables`), PNG plots (:mod:`.plots`), one
self-contained HTML page per run built from a template (:mod:`.page`), the report sections the commands
share (:mod:`.sections`) and a headless-Chromium screenshot of the page (:mod:`.chromium`). Image files
and grids come from :mod:`sace.images`, the one PNG/grid implementation.
"""

from __future__ import annotations

from ..images import grid_image, save_grid, tensor_to_pil
from .chromium import find_chromium, screenshot
from .page import Report
from .plots import DPI, heatmaps_figsize, plot_bars, plot_curves, plot_heatmaps, plot_lines_over_steps
from .tables import MISSING, format_value, html_table, markdown_table

__all__ = [
    "MISSING", "DPI", "Report", "markdown_table", "html_table", "format_value", "plot_curves", "plot_bars",
    "plot_heatmaps", "heatmaps_figsize", "plot_lines_over_steps", "save_grid", "grid_image", "tensor_to_pil",
    "find_chromium", "screenshot",
]
