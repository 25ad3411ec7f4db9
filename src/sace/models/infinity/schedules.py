"""Infinity's dynamic-resolution scale schedules.

Facts (``shared/docs/reference-models.md`` §1.3; reference file
``FoundationVision/Infinity: infinity/utils/dynamic_resolution.py``):

* 8 height/width ratios, each with 13 token grids; the transposed grids serve the inverse ratios,
  giving 15 aspect-ratio templates.
* A pixel budget keeps a prefix of the 13 grids: 0.06M -> 7 scales, 0.25M -> 10, 0.60M -> 12, 1M -> 13.
  Pixels are the last grid times the VAE stride (16): 1:1 at 1M is 64x64 tokens = 1024x1024 px.
* The template is the nearest ratio (``argmin |h/w - template|``).
* RoPE positions ("mode 2") are normalised to the last grid of the aspect ratio's **1M** schedule,
  whatever the budget used to generate.
"""

from __future__ import annotations

from ...errors import SaceError
from ..base import Schedule

# Token grids (h, w) per height/width ratio; a row of 13 scales each.
RATIO_GRIDS: dict[float, list[tuple[int, int]]] = {
    1.000: [(1, 1), (2, 2), (4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32),
            (40, 40), (48, 48), (64, 64)],
    1.250: [(1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28),
            (45, 36), (55, 44), (70, 56)],
    1.333: [(1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27),
            (48, 36), (60, 45), (72, 54)],
    1.500: [(1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26),
            (48, 32), (63, 42), (78, 52)],
    1.750: [(1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24),
            (56, 32), (70, 40), (84, 48)],
    2.000: [(1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23),
            (60, 30), (74, 37), (90, 45)],
    2.500: [(1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20),
            (65, 26), (80, 32), (100, 40)],
    3.000: [(1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18),
            (72, 24), (90, 30), (111, 37)],
}

#: pixel budget -> number of scales kept
PIXEL_BUDGETS: dict[str, int] = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}


def _all_templates() -> dict[float, list[tuple[int, int]]]:
    out: dict[float, list[tuple[int, int]]] = {}
    for ratio, grids in RATIO_GRIDS.items():
        out[ratio] = grids
        if ratio != 1.0:
            # the reference truncates 1/ratio to 3 decimals (int(1/r*1000)/1000)
            out[int(1 / ratio * 1000) / 1000] = [(w, h) for h, w in grids]
    return out


#: all 15 aspect-ratio templates (h/w -> 13 grids)
TEMPLATES: dict[float, list[tuple[int, int]]] = _all_templates()


def nearest_template(h_div_w: float) -> float:
    """The template ratio nearest to ``h_div_w`` (height / width, > 0)."""
    if not h_div_w > 0:
        raise SaceError(f"aspect ratio h/w must be positive, got {h_div_w}")
    return min(TEMPLATES, key=lambda t: (abs(t - h_div_w), t))


def infinity_schedule(h_div_w: float = 1.0, pn: str = "1M", patch: int = 1, vae_stride: int = 16) -> Schedule:
    """The Infinity scale schedule for an aspect ratio and a pixel budget.

    Args:
        h_div_w: desired height / width; the nearest of the 15 templates is used.
        pn: pixel budget, one of ``0.06M``, ``0.25M``, ``0.60M``, ``1M``.
        patch: spatial patchify factor (2 for Infinity-8B: the VAE grid is twice the token grid).
        vae_stride: pixels per VAE latent cell (16 for the 2B VAE, 8 for the 8B VAE).
    Returns:
        A :class:`Schedule`; with ``patch=1, vae_stride=16`` at 1:1 it has 521 / 2,521 / 10,521 tokens
        for 0.06M / 0.25M / 1M.
    Raises:
        SaceError: unknown pixel budget.
    """
    if pn not in PIXEL_BUDGETS:
        raise SaceError(f"unknown pixel budget {pn!r}; choose one of {sorted(PIXEL_BUDGETS)}")
    t = nearest_template(h_div_w)
    grids = TEMPLATES[t]
    n = PIXEL_BUDGETS[pn]
    # Infinity-8B (patch=2): the transformer grid is the template grid; the VAE grid is patch x larger.
    return Schedule(tuple(grids[:n]), vae_stride=vae_stride, patch=patch, rope_grid=grids[-1],
                    name=f"{t:.3f}/{pn}")


def schedule_for_size(height: int, width: int, pn: str | None = None, patch: int = 1,
                      vae_stride: int = 16) -> Schedule:
    """Schedule whose template ratio is nearest to ``height/width``; ``pn`` defaults to the budget
    whose 1:1 resolution is nearest to ``sqrt(height*width)``."""
    if height <= 0 or width <= 0:
        raise SaceError(f"image size must be positive, got {height}x{width}")
    if pn is None:
        side = (height * width) ** 0.5
        pn = min(PIXEL_BUDGETS, key=lambda p: abs(TEMPLATES[1.0][PIXEL_BUDGETS[p] - 1][0] * 16 * patch - side))
    return infinity_schedule(height / width, pn, patch=patch, vae_stride=vae_stride)


def custom_schedule(sides: list[int] | list[tuple[int, int]], vae_stride: int, name: str = "custom") -> Schedule:
    """A schedule from explicit grids, e.g. ``[1, 2, 3, 4, 6, 8]`` for a small model; RoPE positions
    are normalised to the last grid."""
    grids = tuple((s, s) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in sides)
    if grids[0] != (1, 1):
        raise SaceError(f"the first scale must be 1x1 (the SOS token), got {grids[0]}")
    return Schedule(grids, vae_stride=vae_stride, patch=1, rope_grid=grids[-1], name=name)
