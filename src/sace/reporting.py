"""Turning results into things people look at: tables (Markdown/HTML), PNG plots, image grids, one
self-contained HTML page per run, and a headless-Chromium screenshot of that page.

Everything here writes atomically (see :mod:`sace.io`): a crash never leaves a half-written plot or page.
Plots use matplotlib's Agg renderer through :class:`matplotlib.figure.Figure` objects (never ``pyplot``),
so they need no display, keep no global state and have a deterministic pixel size
(``figsize * dpi``). The HTML page embeds every image as a ``data:image/png;base64,`` URI and inlines
its CSS: one file, no external resources, no JavaScript — it can be mailed, archived or opened offline.

Missing values (``None``, NaN) are shown as an en dash ``–`` in every table.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import numbers
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import SaceError
from .io import atomic_path, write_text

__all__ = [
    "MISSING",
    "DPI",
    "Report",
    "markdown_table",
    "html_table",
    "format_value",
    "plot_curves",
    "plot_bars",
    "plot_heatmaps",
    "heatmaps_figsize",
    "plot_lines_over_steps",
    "save_grid",
    "grid_image",
    "tensor_to_pil",
    "find_chromium",
    "screenshot",
]

MISSING = "\u2013"  # en dash, shown for None / NaN
DPI = 110
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


# --------------------------------------------------------------------------------------------- tables
def _scalar(v: Any) -> Any:
    """Unwrap 0-d tensors / numpy scalars to Python numbers; leave everything else alone."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.size == 1:
        return v.item()
    return v


def _is_missing(v: Any) -> bool:
    v = _scalar(v)
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_number(v: Any) -> float | None:
    """A finite-or-infinite float for numeric values (not bools), None otherwise or when missing."""
    v = _scalar(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or _is_missing(v):
        return None
    return float(v)


def format_value(v: Any, floatfmt: str = "{:.3f}") -> str:
    """Format one table cell: ``None``/NaN -> ``–``, floats with ``floatfmt`` (a ``str.format`` pattern),
    ints/bools/strings as ``str``; 0-d tensors and numpy scalars are unwrapped first."""
    v = _scalar(v)
    if _is_missing(v):
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
               all(_as_number(r.get(c)) is not None or _is_missing(r.get(c)) for r in rows) for c in columns]
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


# --------------------------------------------------------------------------------------------- images
def _to_chw(img: Any, what: str = "image") -> torch.Tensor:
    """(3,H,W) float32 in [0,1] from a (3,H,W)/(1,H,W)/(H,W) tensor or array in [0,1]."""
    t = torch.as_tensor(np.asarray(img) if not isinstance(img, torch.Tensor) else img).detach().cpu()
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3) or t.shape[1] < 1 or t.shape[2] < 1:
        raise SaceError(f"{what} must have shape (3, H, W), (1, H, W) or (H, W); got {tuple(t.shape)}")
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if not torch.isfinite(t).all():
        raise SaceError(f"{what} contains NaN or infinite values")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.clamp(0, 1)


def tensor_to_pil(img: Any):
    """A ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` float tensor/array in [0, 1] (or uint8 in [0, 255]) as an
    RGB ``PIL.Image`` (float values are clamped to [0, 1] and rounded to uint8).

    Raises:
        SaceError: another shape, or non-finite values.
    """
    from PIL import Image

    arr = _to_chw(img).permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def _pil_png_bytes(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _save_pil(im, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path


def _save_fig(fig, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _check_len(name: str, values: Sequence, n: int, what: str) -> list:
    values = [float(_scalar(v)) if _scalar(v) is not None else float("nan") for v in values]
    if len(values) != n:
        raise SaceError(f"{what}: {name!r} has {len(values)} values but there are {n} x positions")
    return values


# ---------------------------------------------------------------------------------------------- plots
def plot_curves(x: Sequence[float], series: Mapping[str, Mapping[str, Sequence[float] | None]],
                path: str | os.PathLike, xlabel: str = "", ylabel: str = "", title: str | None = None,
                xticks: Sequence[float] | None = None, ylim: tuple[float, float] | None = None,
                figsize: tuple[float, float] = (6.4, 4.0), dpi: int = DPI) -> Path:
    """Lines with shaded confidence bands (e.g. ISSA commitment A(k) / late-injection B(k) per scale,
    incremental saliency per scale).

    Args:
        x: the shared x positions (length n).
        series: name -> ``{"mean": [n floats], "lo": [n] or None, "hi": [n] or None}``; the band between
            ``lo`` and ``hi`` is shaded when both are given. ``None``/NaN values leave gaps.
        path: the PNG to write (atomically).
        xticks: tick positions (default: every x when n <= 16, else automatic).
        ylim: ``(low, high)`` y range (default automatic).
        figsize, dpi: the PNG is exactly ``round(figsize * dpi)`` pixels (default 704 x 440).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: no series, a series without ``mean``, or lengths that differ from ``len(x)``.
    """
    xs = [float(_scalar(v)) for v in x]
    if not series:
        raise SaceError("plot_curves: no series to plot")
    fig = _new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, s) in enumerate(series.items()):
        if "mean" not in s or s["mean"] is None:
            raise SaceError(f"plot_curves: series {name!r} has no 'mean' values")
        color = _COLORS[i % len(_COLORS)]
        mean = _check_len(name, s["mean"], len(xs), "plot_curves")
        ax.plot(xs, mean, marker="o", markersize=3.5, linewidth=1.6, color=color, label=str(name))
        lo, hi = s.get("lo"), s.get("hi")
        if lo is not None and hi is not None:
            lo = _check_len(name, lo, len(xs), "plot_curves (lo)")
            hi = _check_len(name, hi, len(xs), "plot_curves (hi)")
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
    if xticks is not None:
        ax.set_xticks(list(xticks))
    elif 0 < len(xs) <= 16:
        ax.set_xticks(xs)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save_fig(fig, path, dpi)


def plot_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], path: str | os.PathLike,
              xlabel: str = "", ylabel: str = "", title: str | None = None,
              errors: Mapping[str, Sequence[float]] | None = None, ylim: tuple[float, float] | None = None,
              figsize: tuple[float, float] = (6.4, 4.0), dpi: int = DPI) -> Path:
    """Grouped bars: one group per category, one bar per series (e.g. per-scale divergence share,
    per-class accuracy before/after erasure).

    Args:
        categories: group labels (length n).
        series: name -> n values (``None``/NaN draws no bar).
        errors: optional name -> n symmetric error half-widths (drawn as error bars).
        figsize, dpi: the PNG is exactly ``round(figsize * dpi)`` pixels.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: no series, lengths that differ from ``len(categories)``, errors for an unknown series.
    """
    cats = [str(c) for c in categories]
    if not series:
        raise SaceError("plot_bars: no series to plot")
    errors = dict(errors or {})
    unknown = set(errors) - set(series)
    if unknown:
        raise SaceError(f"plot_bars: errors given for unknown series {sorted(unknown)}")
    fig = _new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    k = len(series)
    width = 0.8 / k
    base = np.arange(len(cats), dtype=float)
    for i, (name, vals) in enumerate(series.items()):
        vals = _check_len(name, vals, len(cats), "plot_bars")
        err = _check_len(name, errors[name], len(cats), "plot_bars (errors)") if name in errors else None
        ax.bar(base + (i - (k - 1) / 2) * width, vals, width=width * 0.95, color=_COLORS[i % len(_COLORS)],
               label=str(name), yerr=err, capsize=2.5 if err is not None else 0, error_kw={"linewidth": 0.9})
    ax.set_xticks(base)
    ax.set_xticklabels(cats, rotation=30 if max((len(c) for c in cats), default=0) * len(cats) > 60 else 0,
                       ha="right" if max((len(c) for c in cats), default=0) * len(cats) > 60 else "center",
                       fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if k > 1:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save_fig(fig, path, dpi)


def _heatmap_cols(n: int, ncols: int | None) -> int:
    """Panels per row: ``ncols`` clipped to [1, n], or by default the fewest rows of at most 6 panels,
    balanced (6 -> 6, 7 -> 4+3, 10 -> 5+5, 13 -> 5+5+3)."""
    if ncols is not None:
        return max(1, min(int(ncols), n))
    rows = (n + 5) // 6
    return (n + rows - 1) // rows


def heatmaps_figsize(n: int, ncols: int | None = None, suptitle: bool = False,
                     panel: float = 2.2) -> tuple[float, float]:
    """The figure size (inches) :func:`plot_heatmaps` uses for ``n`` panels: ``panel`` inches per panel,
    ``ncols`` panels per row (default :func:`_heatmap_cols`: at most 6, rows balanced), plus 0.4 in. for a
    suptitle."""
    ncols = _heatmap_cols(n, ncols)
    nrows = (n + ncols - 1) // ncols
    return (panel * ncols, panel * nrows + (0.4 if suptitle else 0.0))


def plot_heatmaps(maps: Sequence[Any], titles: Sequence[str] | None, path: str | os.PathLike,
                  suptitle: str | None = None, cmap: str = "magma", shared_scale: bool = False,
                  ncols: int | None = None, dpi: int = DPI) -> Path:
    """One small heat-map panel per scale; grids of different sizes (1x1, 2x2, ..., 8x8) side by side,
    drawn with nearest interpolation, with a colorbar per panel (or one shared colorbar when
    ``shared_scale``, where all panels use the global min/max).

    Args:
        maps: 2-D tensors/arrays ``(h_k, w_k)`` of any real dtype (NaN cells are left blank).
        titles: one title per map (default ``"scale k"``).
        ncols: panels per row (default: at most 6, rows balanced).
        dpi: the PNG is ``round(heatmaps_figsize(len(maps), ncols, bool(suptitle)) * dpi)`` pixels.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: no maps, a map that is not 2-D or is empty, a titles list of the wrong length.
    """
    if len(maps) == 0:
        raise SaceError("plot_heatmaps: no maps to plot")
    arrs = []
    for i, m in enumerate(maps):
        a = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64)
        if a.ndim != 2 or a.size == 0:
            raise SaceError(f"plot_heatmaps: map {i} must be a non-empty 2-D array, got shape {tuple(a.shape)}")
        arrs.append(a.astype(np.float64))
    titles = [f"scale {i}" for i in range(len(arrs))] if titles is None else [str(t) for t in titles]
    if len(titles) != len(arrs):
        raise SaceError(f"plot_heatmaps: {len(arrs)} maps but {len(titles)} titles")
    figsize = heatmaps_figsize(len(arrs), ncols, bool(suptitle))
    ncols = _heatmap_cols(len(arrs), ncols)
    nrows = (len(arrs) + ncols - 1) // ncols
    vmin = vmax = None
    if shared_scale:
        finite = np.concatenate([a[np.isfinite(a)] for a in arrs])
        if finite.size:
            vmin, vmax = float(finite.min()), float(finite.max())
    fig = _new_figure(figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for idx, ax in enumerate(axes.flat):
        if idx >= len(arrs):
            ax.set_axis_off()
            continue
        a = arrs[idx]
        im = ax.imshow(a, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax, aspect="equal")
        ax.set_title(titles[idx], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if not shared_scale:
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            cb.ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    if shared_scale and im is not None:
        fig.tight_layout(rect=(0, 0, 0.9, 1))
        cax = fig.add_axes((0.92, 0.15, 0.02, 0.7))
        cb = fig.colorbar(im, cax=cax)
        cb.ax.tick_params(labelsize=6)
    else:
        fig.tight_layout()
    return _save_fig(fig, path, dpi)


def _ema(vals: list[float], alpha: float) -> list[float]:
    out, m = [], None
    for v in vals:
        if math.isnan(v):
            out.append(float("nan"))
            continue
        m = v if m is None else alpha * m + (1 - alpha) * v
        out.append(m)
    return out


def plot_lines_over_steps(logs: Mapping[str, Sequence[float]], path: str | os.PathLike, xlabel: str = "step",
                          ylabel: str = "", title: str | None = None,
                          steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                          smooth: float | None = None, logy: bool = False, separate: bool = False,
                          figsize: tuple[float, float] | None = None, dpi: int = DPI) -> Path:
    """Training curves (losses, entropies, ... per step).

    Args:
        logs: name -> values per logged step (series may have different lengths; NaN/None leave gaps).
        steps: x values: one list shared by all series, or name -> list (default ``0, 1, 2, ...``).
        smooth: EMA factor in [0, 1) — when given, the raw curve is drawn faintly and the EMA on top.
        logy: log-scaled y axis (non-positive values are not drawn).
        separate: one panel per series (up to 3 per row), for series on different scales.
        figsize: default ``(6.4, 4.0)`` for one panel, ``(3.2 * cols, 2.6 * rows)`` when ``separate``;
            the PNG is exactly ``round(figsize * dpi)`` pixels.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: no series, a steps list whose length differs from its series, a bad ``smooth``.
    """
    if not logs:
        raise SaceError("plot_lines_over_steps: no series to plot")
    if smooth is not None and not 0 <= smooth < 1:
        raise SaceError(f"plot_lines_over_steps: smooth must be in [0, 1), got {smooth}")
    names = list(logs)
    n = len(names)
    ncols = min(n, 3) if separate else 1
    nrows = (n + ncols - 1) // ncols if separate else 1
    if figsize is None:
        figsize = (3.2 * ncols, 2.6 * nrows) if separate and n > 1 else (6.4, 4.0)
    fig = _new_figure(figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    axes = list(axes)
    for i, name in enumerate(names):
        ys = [float("nan") if _is_missing(v) else float(_scalar(v)) for v in logs[name]]
        if steps is None:
            xs = list(range(len(ys)))
        else:
            st = steps.get(name) if isinstance(steps, Mapping) else steps
            xs = list(range(len(ys))) if st is None else [float(_scalar(v)) for v in st]
        if len(xs) != len(ys):
            raise SaceError(f"plot_lines_over_steps: {name!r} has {len(ys)} values but {len(xs)} steps")
        ax = axes[i] if separate else axes[0]
        color = _COLORS[i % len(_COLORS)]
        if smooth:
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(xs, _ema(ys, smooth), color=color, linewidth=1.5, label=str(name))
        else:
            ax.plot(xs, ys, color=color, linewidth=1.3, label=str(name))
        if separate:
            ax.set_title(str(name), fontsize=9)
    used = axes[:n] if separate else axes[:1]
    for ax in axes[len(used):]:
        ax.set_axis_off()
    for ax in used:
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=8 if separate else None)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=8 if separate else None)
        ax.grid(True, alpha=0.3)
        if separate:
            ax.tick_params(labelsize=7)
    if not separate:
        axes[0].legend(fontsize=8, frameon=False)
    if title and separate:
        fig.suptitle(title, fontsize=10)
    elif title:
        axes[0].set_title(title)
    fig.tight_layout()
    return _save_fig(fig, path, dpi)


# ---------------------------------------------------------------------------------------------- grids
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, max_width: float, max_lines: int = 3) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; over-long words are cut; at most ``max_lines`` lines."""
    words, lines, cur = str(text).split(), [], ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if font.getlength(cand) <= max_width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while font.getlength(w) > max_width and len(w) > 1:
            cut = len(w)
            while cut > 1 and font.getlength(w[:cut]) > max_width:
                cut -= 1
            lines.append(w[:cut])
            w = w[cut:]
        cur = w
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "\u2026") > max_width:
            last = last[:-1]
        lines[-1] = last + "\u2026"
    return lines or [""]


def grid_image(images: Any, nrow: int, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, upscale: int = 4, title: str | None = None,
               pad: int = 2, font_size: int = 12):
    """The labelled image grid of :func:`save_grid` as an RGB ``PIL.Image`` (not written anywhere).

    Layout: tiles of ``upscale * (H, W)`` pixels (nearest-neighbour), ``pad`` white pixels between
    them; column labels above (wrapped to the tile width, up to 3 lines), row labels on the left
    (wrapped to at most 160 px), an optional title on top.
    """
    from PIL import Image, ImageDraw

    if isinstance(images, (list, tuple)):
        images = torch.stack([_to_chw(im, f"image {i}") for i, im in enumerate(images)]) if images else None
    if images is None:
        raise SaceError("save_grid: no images")
    images = torch.as_tensor(images).detach().cpu().float()
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise SaceError(f"save_grid: images must have shape (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise SaceError("save_grid: images contain NaN or infinite values")
    if nrow < 1:
        raise SaceError(f"save_grid: nrow (images per row) must be >= 1, got {nrow}")
    if upscale < 1:
        raise SaceError(f"save_grid: upscale must be >= 1, got {upscale}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    ncol = min(nrow, n)
    nrows = (n + nrow - 1) // nrow
    if row_labels is not None and len(row_labels) != nrows:
        raise SaceError(f"save_grid: {nrows} rows of images but {len(row_labels)} row labels")
    if col_labels is not None and len(col_labels) != ncol:
        raise SaceError(f"save_grid: {ncol} columns of images but {len(col_labels)} column labels")
    th, tw = h * upscale, w * upscale
    font = _font(font_size)
    line_h = int(font_size * 1.25)

    row_lines = [_wrap(lbl, font, 160) for lbl in row_labels] if row_labels is not None else None
    left = 0
    if row_lines:
        left = int(max(font.getlength(s) for ls in row_lines for s in ls)) + 2 * pad + 6
    col_lines = [_wrap(lbl, font, tw) for lbl in col_labels] if col_labels is not None else None
    top_cols = (max(len(ls) for ls in col_lines) * line_h + 4) if col_lines else 0
    title_font = _font(font_size + 2)
    title_lines = _wrap(title, title_font, max(ncol * (tw + pad) + left, 200), max_lines=2) if title else []
    top_title = len(title_lines) * int((font_size + 2) * 1.3) + (4 if title_lines else 0)
    top = top_title + top_cols

    width = left + pad + ncol * (tw + pad)
    height = top + pad + nrows * (th + pad)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    arr = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        tile = Image.fromarray(np.ascontiguousarray(arr[i].permute(1, 2, 0).numpy()), mode="RGB")
        if upscale != 1:
            tile = tile.resize((tw, th), resample=Image.NEAREST)
        canvas.paste(tile, (left + pad + c * (tw + pad), top + pad + r * (th + pad)))
    for j, line in enumerate(title_lines):
        x = max(0, (width - title_font.getlength(line)) / 2)
        draw.text((x, 2 + j * int((font_size + 2) * 1.3)), line, fill=(0, 0, 0), font=title_font)
    if col_lines:
        for c, ls in enumerate(col_lines):
            x0 = left + pad + c * (tw + pad)
            y0 = top_title + top_cols - len(ls) * line_h - 2
            for j, line in enumerate(ls):
                draw.text((x0 + (tw - font.getlength(line)) / 2, y0 + j * line_h), line, fill=(0, 0, 0), font=font)
    if row_lines:
        for r, ls in enumerate(row_lines):
            y0 = top + pad + r * (th + pad) + (th - len(ls) * line_h) / 2
            for j, line in enumerate(ls):
                draw.text((left - pad - 4 - font.getlength(line), y0 + j * line_h), line, fill=(0, 0, 0), font=font)
    return canvas


def save_grid(images: Any, nrow: int, path: str | os.PathLike, row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, upscale: int = 4, title: str | None = None,
              pad: int = 2) -> Path:
    """Write an image grid as PNG (atomically), with optional row/column labels and a title.

    Args:
        images: ``(N, 3, H, W)`` (or ``(N, 1, H, W)``) float tensor/array in [0, 1] (values are clamped),
            or a list of ``(3, H, W)`` images; filled row by row.
        nrow: images per row (as in :func:`sace.generate.image_grid`).
        row_labels: one label per grid row (``ceil(N / nrow)``), drawn on the left.
        col_labels: one label per grid column (``min(nrow, N)``), drawn on top, wrapped to the tile width.
        upscale: integer nearest-neighbour magnification of each tile (tiny 32x32 images -> 128x128).
        title: a line of text above everything.
    Returns:
        ``path`` as a :class:`~pathlib.Path`. Without labels or title the PNG is
        ``(pad + nrow*(upscale*W + pad))`` x ``(pad + rows*(upscale*H + pad))`` pixels.
    Raises:
        SaceError: wrong shapes, non-finite values, label counts that do not match the grid, bad nrow/upscale.
    """
    return _save_pil(grid_image(images, nrow, row_labels, col_labels, upscale, title, pad), path)


# --------------------------------------------------------------------------------------------- report
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;
padding:0 20px;color:#1b1f24;line-height:1.45;background:#fff}
h1{font-size:1.7em;border-bottom:2px solid #d0d7de;padding-bottom:.25em}
h2{font-size:1.35em;border-bottom:1px solid #e3e7eb;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.12em}h4,h5,h6{font-size:1em}
p{margin:.5em 0}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
caption{caption-side:top;text-align:left;font-style:italic;color:#57606a;padding-bottom:.3em}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f3f5f7}tr:nth-child(even) td{background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{background:#e6f4ea !important}
figure{margin:1em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #e3e7eb}
img.px{image-rendering:pixelated;image-rendering:crisp-edges}
figcaption{font-size:.88em;color:#57606a;margin-top:.3em;max-width:100%}
details{margin:.6em 0;border:1px solid #e3e7eb;border-radius:4px;padding:.3em .6em}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.7em;overflow:auto;font-size:.82em;max-height:40em}
section{margin:0}
.sub{color:#57606a;margin-top:-.4em}
"""


class Report:
    """An ordered document builder that writes ONE self-contained HTML page (and Markdown).

    Blocks are added in order; every method returns ``self`` so calls can be chained::

        rep = Report("SACE: erase 'sneaker'")
        rep.heading("Results").table(rows, highlight={"ACC_e": "min"}).image(grid_png, caption="before/after")
        with rep.section("Curves"):
            rep.figure(fig)
        rep.write("runs/x/report.html")

    Images are embedded as base64 PNG data URIs when the HTML is produced; paths are read at call time
    (a missing file fails early), so the page does not depend on them afterwards.
    """

    def __init__(self, title: str, subtitle: str | None = None):
        self.title = str(title)
        self.subtitle = subtitle
        self._root: list[tuple] = []
        self._stack: list[list[tuple]] = [self._root]

    # -- building
    def _add(self, block: tuple) -> Report:
        self._stack[-1].append(block)
        return self

    def heading(self, text: str, level: int = 2) -> Report:
        """A heading; ``level`` 1..6 (1 is the page title's level)."""
        if not 1 <= int(level) <= 6:
            raise SaceError(f"heading level must be 1..6, got {level}")
        return self._add(("heading", str(text), int(level)))

    def text(self, text: str) -> Report:
        """Plain text; blank lines separate paragraphs; HTML is escaped (shown literally)."""
        return self._add(("text", str(text)))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              caption: str | None = None, floatfmt: str | Mapping[str, str] = "{:.3f}",
              highlight: Mapping[str, str] | None = None) -> Report:
        """A table (see :func:`markdown_table` for the arguments); formatted now, so errors raise here."""
        rows = [dict(r) for r in rows]
        html_s = html_table(rows, columns, floatfmt, highlight, caption)
        md = markdown_table(rows, columns, floatfmt, highlight)
        return self._add(("table", html_s, md, caption))

    def kv(self, mapping: Mapping[str, Any], caption: str | None = None, floatfmt: str = "{:.4g}") -> Report:
        """A two-column key/value table (run settings, model card facts, ...)."""
        rows = []
        for k, v in mapping.items():
            v = _scalar(v)
            if not isinstance(v, (numbers.Number, str, type(None))):
                v = json.dumps(v, default=str)
            rows.append({"key": str(k), "value": v})
        return self.table(rows, ["key", "value"], caption=caption, floatfmt={"value": floatfmt})

    def image(self, src: str | os.PathLike | torch.Tensor | np.ndarray | Any, caption: str | None = None,
              width: int | None = None) -> Report:
        """An image.

        Args:
            src: a file path (PNG embedded as is; other formats PIL can read are converted to PNG), a
                ``(3, H, W)``/``(1, H, W)``/``(H, W)`` float tensor or array in [0, 1], or a ``PIL.Image``.
            caption: text under the image.
            width: display width in CSS pixels (default: natural size; images narrower than 96 px are
                shown 4x larger with pixelated rendering).
        Raises:
            SaceError: a missing/unreadable file, a wrong shape or non-finite values.
        """
        path = None
        if isinstance(src, (str, os.PathLike)):
            path = Path(src)
            if not path.is_file():
                raise SaceError(f"image not found: {path}")
            data = path.read_bytes()
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(io.BytesIO(data)) as im:
                    nat_w = im.size[0]
                    if not data.startswith(_PNG_MAGIC):
                        data = _pil_png_bytes(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise SaceError(f"{path} is not a readable image ({e})") from e
        elif hasattr(src, "save") and hasattr(src, "size") and not isinstance(src, (torch.Tensor, np.ndarray)):
            data, nat_w = _pil_png_bytes(src), src.size[0]
        else:
            im = tensor_to_pil(src)
            data, nat_w = _pil_png_bytes(im), im.size[0]
        pixelated = width is None and nat_w < 96
        if pixelated:
            width = nat_w * 4
        return self._add(("image", data, caption, width, path, pixelated))

    def figure(self, fig: Any, caption: str | None = None, dpi: int = DPI, width: int | None = None) -> Report:
        """A matplotlib ``Figure`` rendered now to PNG at ``dpi`` and embedded (the figure is not closed)."""
        if not hasattr(fig, "savefig"):
            raise SaceError(f"figure() needs a matplotlib Figure, got {type(fig).__name__}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        return self._add(("image", buf.getvalue(), caption, width, None, False))

    def details(self, summary: str, text: Any) -> Report:
        """A collapsed block (``<details>``) with preformatted text; non-strings (dicts, lists) are shown
        as indented JSON."""
        if not isinstance(text, str):
            text = json.dumps(text, indent=2, default=str, sort_keys=False)
        return self._add(("details", str(summary), text))

    def html(self, fragment: str) -> Report:
        """A raw HTML fragment, inserted as is (you are responsible for it staying self-contained)."""
        return self._add(("html", str(fragment)))

    @contextlib.contextmanager
    def section(self, title: str | None = None, level: int = 2) -> Iterator[Report]:
        """``with rep.section("Erasure"):`` — blocks added inside go into a ``<section>`` headed by ``title``."""
        children: list[tuple] = []
        self._add(("section", children))
        self._stack.append(children)
        try:
            if title is not None:
                self.heading(title, level)
            yield self
        finally:
            self._stack.pop()

    # -- output
    def to_html(self) -> str:
        """The whole page as one string (inline CSS, images as ``data:image/png;base64,`` URIs, no JS)."""
        parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
                 '<meta name="viewport" content="width=device-width, initial-scale=1">',
                 f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
                 f"<h1>{html.escape(self.title)}</h1>"]
        if self.subtitle:
            parts.append(f'<p class="sub">{html.escape(str(self.subtitle))}</p>')
        self._html_blocks(self._root, parts)
        parts.append("</body></html>\n")
        return "\n".join(parts)

    def _html_blocks(self, blocks: list[tuple], parts: list[str]) -> None:
        for b in blocks:
            kind = b[0]
            if kind == "heading":
                parts.append(f"<h{b[2]}>{html.escape(b[1])}</h{b[2]}>")
            elif kind == "text":
                for para in _paragraphs(b[1]):
                    parts.append("<p>" + html.escape(para).replace("\n", "<br>") + "</p>")
            elif kind == "table":
                parts.append(b[1])
            elif kind == "image":
                _, data, caption, width, _path, pixelated = b
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                attrs = (f' width="{int(width)}"' if width else "") + (' class="px"' if pixelated else "")
                alt = html.escape(caption or "image", quote=True)
                cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
                parts.append(f'<figure><img src="{uri}" alt="{alt}"{attrs}>{cap}</figure>')
            elif kind == "details":
                parts.append(f"<details><summary>{html.escape(b[1])}</summary><pre>{html.escape(b[2])}</pre>"
                             "</details>")
            elif kind == "html":
                parts.append(b[1])
            elif kind == "section":
                parts.append("<section>")
                self._html_blocks(b[1], parts)
                parts.append("</section>")

    def to_markdown(self, base_dir: str | os.PathLike | None = None) -> str:
        """The page as Markdown: headings, text, tables, details (as ``<details>`` with a code block) and
        images that came from files (linked relative to ``base_dir`` when given, else by the path as given);
        images from tensors/figures are omitted."""
        out = [f"# {_md_text(self.title)}", ""]
        if self.subtitle:
            out += [f"*{_md_text(str(self.subtitle))}*", ""]
        self._md_blocks(self._root, out, base_dir)
        return "\n".join(out).rstrip() + "\n"

    def _md_blocks(self, blocks: list[tuple], out: list[str], base_dir) -> None:
        for b in blocks:
            kind = b[0]
            if kind == "heading":
                out += ["#" * b[2] + " " + _md_text(b[1]), ""]
            elif kind == "text":
                for para in _paragraphs(b[1]):
                    out += [_md_text(para), ""]
            elif kind == "table":
                if b[3]:
                    out += [f"*{_md_text(b[3])}*", ""]
                out += [b[2].rstrip("\n"), ""]
            elif kind == "image":
                path, caption = b[4], b[2]
                if path is None:
                    continue
                link = Path(os.path.relpath(path.resolve(), Path(base_dir).resolve())) if base_dir else path
                out += [f"![{caption or path.name}]({link.as_posix()})", ""]
                if caption:
                    out += [f"*{_md_text(caption)}*", ""]
            elif kind == "details":
                fence = "```"
                while fence in b[2]:
                    fence += "`"
                out += [f"<details><summary>{html.escape(b[1])}</summary>", "", fence, b[2], fence, "",
                        "</details>", ""]
            elif kind == "section":
                self._md_blocks(b[1], out, base_dir)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the self-contained HTML page atomically; returns ``path`` as a :class:`~pathlib.Path`.

        Raises:
            SaceError: the folder is not writable or the disk is full (nothing is overwritten).
        """
        path = Path(path)
        write_text(path, self.to_html())
        return path

    def write_markdown(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_markdown` (image links relative to the file's folder) atomically."""
        path = Path(path)
        write_text(path, self.to_markdown(base_dir=path.parent))
        return path


def _md_text(text: str) -> str:
    """Markdown text with HTML tags neutralised (``<``/``>`` as entities), as the HTML page escapes them."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _paragraphs(text: str) -> list[str]:
    paras = [p.strip("\n") for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in paras if p.strip()]


# ------------------------------------------------------------------------------------------ screenshot
def find_chromium() -> str | None:
    """The path of a Chromium/Chrome executable: ``$SACE_CHROMIUM``, then ``chromium``,
    ``chromium-browser``, ``google-chrome`` on PATH, then ``/usr/bin/chromium``; ``None`` if none."""
    env = os.environ.get("SACE_CHROMIUM")
    if env and Path(env).is_file() and os.access(env, os.X_OK):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium"):
        if Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return None


def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280, height: int = 2000,
               timeout: float = 90.0) -> Path:
    """Render a local HTML file with headless Chromium and save a ``width`` x ``height`` PNG (atomically).

    Chromium runs with a fresh temporary profile, no GPU, no sandbox, and no background networking;
    the page should be self-contained (as :meth:`Report.write` makes it).

    Returns:
        ``png_path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: Chromium is not installed (hint: ``apt-get install chromium``, or set ``SACE_CHROMIUM``),
            the HTML file does not exist, Chromium fails or times out.
    """
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise SaceError(f"screenshot: HTML file not found: {html_path}")
    exe = find_chromium()
    if exe is None:
        raise SaceError("screenshot needs Chromium, which was not found (install it with "
                        "`apt-get install chromium`, or point SACE_CHROMIUM at a Chrome/Chromium binary)")
    png_path = Path(png_path)
    with tempfile.TemporaryDirectory(prefix="sace-chromium-") as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={shot}",
               f"--window-size={int(width)},{int(height)}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                  text=True, errors="replace")
        except subprocess.TimeoutExpired as e:
            raise SaceError(f"screenshot: Chromium did not finish within {timeout:.0f} s") from e
        except OSError as e:
            raise SaceError(f"screenshot: cannot run {exe} ({e})") from e
        if not shot.is_file() or shot.stat().st_size == 0:
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
            raise SaceError(f"screenshot: Chromium (exit {proc.returncode}) wrote no image; its last messages:\n"
                            f"{tail}")
        with atomic_path(png_path) as out:
            shutil.copyfile(shot, out)
    return png_path
