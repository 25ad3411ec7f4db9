"""Tables as Markdown and HTML, with per-column number formats and best-value highlighting.

Missing values (``None``, NaN) are shown as an en dash ``–`` (:data:`MISSING`) in every table.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import SaceError

__all__ = ["MISSING", "format_value", "markdown_table", "html_table", "scalar", "is_missing"]

MISSING = "\u2013"  # en dash, shown for None / NaN


def scalar(v: Any) -> Any:
    """Unwrap 0-d tensors / numpy scalars to Python numbers; leave everything else alone."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.size == 1:
        return v.item()
    return v


def is_missing(v: Any) -> bool:
    v = scalar(v)
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_number(v: Any) -> float | None:
    """A finite-or-infinite float for numeric values (not bools), None otherwise or when missing."""
    v = scalar(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or is_missing(v):
        return None
    return float(v)


def format_value(v: Any, floatfmt: str = "{:.3f}") -> str:
    """Format one table cell: ``None``/NaN -> ``–``, floats with ``floatfmt`` (a ``str.format`` pattern),
    ints/bools/strings as ``str``; 0-d tensors and numpy scalars are unwrapped first."""
    v = scalar(v)
    if is_missing(v):
        return MISSING
    if isinstance(v, bool) or isinstance(v, numbers.Integral):
        return str(v)
    if isinstance(v, numbers.Real):
        try:
            return floatfmt.format(float(v))
        except (ValueError, IndexError, KeyError) as e:
            raise SaceError(f"bad float format {floatfmt!r} (use a str.format pattern such as '{{:.3f}}')") from e
    return str(v)


def _prepare_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None,
                   floatfmt: str | Mapping[str, str], highlight: Mapping[str, str] | None
                   ) -> tuple[list[str], list[list[str]], list[list[bool]], list[bool]]:
    """Column names, formatted cells, bold flags and per-column 'is numeric' flags."""
    rows = list(rows)
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise SaceError(f"table row {i} is a {type(r).__name__}, expected a dict of column -> value")
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            for k in r:
                seen.setdefault(str(k), None)
        columns = list(seen)
    else:
        columns = [str(c) for c in columns]
    highlight = dict(highlight or {})
    for col, mode in highlight.items():
        if mode not in ("min", "max"):
            raise SaceError(f"highlight for column {col!r} must be 'min' or 'max', got {mode!r}")
        if col not in columns:
            raise SaceError(f"highlight names column {col!r}, which is not in the table (columns: {columns})")

    def fmt_for(col: str) -> str:
        if isinstance(floatfmt, Mapping):
            return floatfmt.get(col, "{:.3f}")
        return floatfmt

    best: dict[str, float] = {}
    for col, mode in highlight.items():
        vals = [x for x in (_as_number(r.get(col)) for r in rows) if x is not None and not math.isnan(x)]
        if vals:
            best[col] = min(vals) if mode == "min" else max(vals)
    cells, bold = [], []
    for r in rows:
        cells.append([format_value(r.get(c), fmt_for(c)) for c in columns])
        bold.append([c in best and _as_number(r.get(c)) == best[c] for c in columns])
    numeric = [any(_as_number(r.get(c)) is not None for r in rows) and
               all(_as_number(r.get(c)) is not None or is_missing(r.get(c)) for r in rows) for c in columns]
    return columns, cells, bold, numeric


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   floatfmt: str | Mapping[str, str] = "{:.3f}",
                   highlight: Mapping[str, str] | None = None) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        rows: one dict per row (column -> value); missing keys, ``None`` and NaN show as ``–``.
        columns: column order (default: keys in order of first appearance).
        floatfmt: ``str.format`` pattern for floats, or a dict column -> pattern (others ``{:.3f}``).
        highlight: column -> ``"min"`` or ``"max"``; the best value(s) of that column are bold (``**x**``).
    Returns:
        The table as text ending in a newline (``"(no rows)\\n"`` when there is nothing to show);
        numeric columns are right-aligned, ``|`` inside cells is escaped.
    Raises:
        SaceError: a row that is not a dict, an unknown highlight column or mode, a bad format pattern.
    """
    columns, cells, bold, numeric = _prepare_table(rows, columns, floatfmt, highlight)
    if not columns:
        return "(no rows)\n"

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in columns) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    for row, b in zip(cells, bold, strict=True):
        lines.append("| " + " | ".join(f"**{esc(s)}**" if f else esc(s) for s, f in zip(row, b, strict=True)) + " |")
    return "\n".join(lines) + "\n"


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
               floatfmt: str | Mapping[str, str] = "{:.3f}", highlight: Mapping[str, str] | None = None,
               caption: str | None = None) -> str:
    """An HTML ``<table>`` (escaped text; best values in ``<b>``; numeric columns get class ``num``).

    Same arguments, missing-value rule and errors as :func:`markdown_table`; ``caption`` becomes a
    ``<caption>``.
    """
    columns, cells, bold, numeric = _prepare_table(rows, columns, floatfmt, highlight)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    if not columns:
        return f"<table>{cap}<tr><td>(no rows)</td></tr></table>\n"
    out = [f"<table>{cap}<thead><tr>"]
    for c, n in zip(columns, numeric, strict=True):
        out.append(("<th class=\"num\">" if n else "<th>") + f"{html.escape(c)}</th>")
    out.append("</tr></thead><tbody>")
    for row, b in zip(cells, bold, strict=True):
        out.append("<tr>")
        for s, f, n in zip(row, b, numeric, strict=True):
            cls = " ".join(x for x in ("num" if n else "", "best" if f else "") if x)
            attr = f' class="{cls}"' if cls else ""
            s = html.escape(s)
            out.append(f"<td{attr}>{f'<b>{s}</b>' if f else s}</td>")
        out.append("</tr>")
    out.append("</tbody></table>\n")
    return "".join(out)
