"""Report sections that several commands share: the evaluation table (Markdown for the console and
``table.md``, HTML for ``table.html`` and the page) and the evaluation section of a page."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .page import Report
from .tables import html_table, markdown_table

__all__ = ["comparison_markdown", "comparison_html", "evaluation_section", "grid_path"]

# best value per column: lowest erasure accuracy, highest preservation accuracy
_HIGHLIGHT = {"ACC_e ↓": "min", "ACC_i ↑": "max"}
_MD_FORMATS = {"train s": "{:.1f}", "peak MB": "{:.0f}", "tokens/step": "{:.0f}"}
_HTML_FORMATS = {"train s": "{:.1f}", "peak MB": "{:.0f}"}   # tokens/step with the default 3 decimals


def comparison_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison table (one row per method, see :func:`sace.evaluation.harness.comparison_rows`)."""
    return markdown_table(rows, floatfmt=_MD_FORMATS, highlight=_HIGHLIGHT)


def comparison_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison table as an HTML ``<table>`` fragment."""
    return html_table(rows, floatfmt=_HTML_FORMATS, highlight=_HIGHLIGHT)


def grid_path(out_dir: str | os.PathLike, method: str) -> Path:
    """Where the evaluation grid of ``method`` lives: ``OUT/grids/NAME.png`` with every character other
    than letters, digits, ``-`` and ``_`` replaced by ``_``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in method)
    return Path(out_dir) / "grids" / f"{safe}.png"


def evaluation_section(page: Report, rows: Sequence[Mapping[str, Any]], methods: Mapping[str, dict],
                       out_dir: str | os.PathLike) -> Report:
    """Add the evaluation to ``page``: the comparison table, every method's grid that exists under
    ``out_dir`` (same prompts and seeds for every method) and the raw metrics in a collapsed block."""
    page.heading("Erasure vs preservation vs cost", 2)
    page.table(rows, floatfmt=_HTML_FORMATS, highlight=_HIGHLIGHT)
    for name in methods:
        g = grid_path(out_dir, name)
        if g.exists():
            page.image(g, caption=f"{name}: same prompts and seeds as every other method")
    return page.details("metrics.json", dict(methods))
