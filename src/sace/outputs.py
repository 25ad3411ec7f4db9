"""The one writer of an evaluation's artifacts: ``metrics.json`` with ``table.md`` and ``table.html``
(``sace evaluate``, ``sace demo``; a generation's ``index.json`` is written by :mod:`sace.generate`).

The library returns typed results (:class:`~sace.evaluation.runner.EvaluationReport`, the generated paths);
the commands and recipes hand them here, so every artifact has one layout, written once per run and
atomically (:mod:`sace.io`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .evaluation.runner import EvaluationReport
from .io import write_json, write_text
from .reporting.sections import comparison_html

__all__ = ["write_evaluation"]


def write_evaluation(out_dir: str | os.PathLike, report: EvaluationReport, extra: dict | None = None) -> Path:
    """Write ``metrics.json`` (:meth:`EvaluationReport.metrics` followed by ``extra``, e.g. the demo's
    timings and ISSA summaries), ``table.md`` and ``table.html`` into ``out_dir``; returns the
    ``metrics.json`` path."""
    out = Path(out_dir)
    write_text(out / "table.md", report.table_markdown)
    write_text(out / "table.html", comparison_html(report.rows))
    write_json(out / "metrics.json", {**report.metrics(), **(extra or {})})
    return out / "metrics.json"
