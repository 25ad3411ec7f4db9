"""PNG plots: curves with confidence bands, grouped bars, heat maps, training logs.

Plots use matplotlib's Agg renderer through :class:`matplotlib.figure.Figure` objects (never ``pyplot``),
so they need no display, keep no global state and have a deterministic pixel size (``figsize * dpi``);
files are written atomically (:func:`sace.io.atomic_path`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SaceError
from ..io import atomic_path
from .tables import is_missing, scalar

__all__ = ["DPI", "plot_curves", "plot_bars", "plot_heatmaps", "heatmaps_figsize", "plot_lines_over_steps"]

DPI = 110
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def _save_fig(fig, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _label_axes(ax, xlabel: str, ylabel: str, title: str | None, ylim: tuple[float, float] | None) -> None:
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)


def _check_len(name: str, values: Sequence, n: int, what: str) -> list:
    values = [float(scalar(v)) if scalar(v) is not None else float("nan") for v in values]
    if len(values) != n:
        raise SaceError(f"{what}: {name!r} has {len(values)} values but there are {n} x positions")
    return values


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
    xs = [float(scalar(v)) for v in x]
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
    _label_axes(ax, xlabel, ylabel, title, ylim)
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
    _label_axes(ax, xlabel, ylabel, title, ylim)
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
        ys = [float("nan") if is_missing(v) else float(scalar(v)) for v in logs[name]]
        if steps is None:
            xs = list(range(len(ys)))
        else:
            st = steps.get(name) if isinstance(steps, Mapping) else steps
            xs = list(range(len(ys))) if st is None else [float(scalar(v)) for v in st]
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
