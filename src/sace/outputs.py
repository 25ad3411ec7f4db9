"""The one writer of each run artifact that is not an image: ``metrics.json`` with ``table.md`` and
``table.html`` (``sace evaluate``, ``sace demo``) and ``index.json`` (``sace generate``).

The library returns typed results (:class:`~sace.evaluation.runner.EvaluationReport`, the generated paths);
the commands and recipes hand them here, so every artifact has one layout, written once per run and
atomically (:mod:`sace.io`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .io import write_json, write_text
from .reporting.sections import comparison_html

if TYPE_CHECKING:  # the type only: generate_sharded writes index.json without loading the evaluation stack
    from .evaluation.runner import EvaluationReport

__all__ = ["write_evaluation", "write_generation_index"]


def write_evaluation(out_dir: str | os.PathLike, report: EvaluationReport, extra: dict | None = None) -> Path:
    """Write ``metrics.json`` (:meth:`EvaluationReport.metrics` followed by ``extra``, e.g. the demo's
    timings and ISSA summaries), ``table.md`` and ``table.html`` into ``out_dir``; returns the
    ``metrics.json`` path."""
    out = Path(out_dir)
    write_text(out / "table.md", report.table_markdown)
    write_text(out / "table.html", comparison_html(report.rows))
    write_json(out / "metrics.json", {**report.metrics(), **(extra or {})})
    return out / "metrics.json"


def write_generation_index(out_dir: str | os.PathLike, *, model: str | None, prompts: Sequence[str],
                           seeds: Sequence[int], paths: Sequence[Path], settings: dict,
                           negative_prompt: str | None, adapters: Sequence[str] = (), batch_size: int,
                           world_size: int = 1, shard_mode: str | None = None) -> Path:
    """Write ``index.json``: the model, adapters, resolved sampling settings, negative prompt, batch size,
    world size and shard mode, the image count and ``images`` (``index``, ``prompt``, ``seed``, ``file``)
    in prompt order; returns its path."""
    path = Path(out_dir) / "index.json"
    write_json(path, {
        "model": model, "adapters": [str(a) for a in adapters], "settings": settings,
        "negative_prompt": negative_prompt, "batch_size": batch_size, "world_size": world_size,
        "shard_mode": shard_mode, "count": len(prompts),
        "images": [{"index": i, "prompt": p, "seed": s, "file": Path(f).name}
                   for i, (p, s, f) in enumerate(zip(prompts, seeds, paths, strict=True))]})
    return path
