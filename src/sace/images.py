"""Images: the one PNG and grid implementation of the project.

Conventions: an image is a ``(3, H, W)`` float tensor in ``[0, 1]`` (``(1, H, W)``, ``(H, W)`` and uint8
``[0, 255]`` are accepted where said); a batch is ``(N, 3, H, W)``. PNGs are written atomically
(:func:`sace.io.atomic_path`): a crash never leaves a half-written file. Float pixels are clamped to
``[0, 1]`` and rounded to uint8 (``round(255 * x)``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import SaceError
from .io import atomic_path

__all__ = ["to_chw", "tensor_to_pil", "png_bytes", "save_pil", "save_png", "load_png", "open_rgb", "png_ok",
           "grid_image", "save_grid"]


def to_chw(img: Any, what: str = "image") -> torch.Tensor:
    """``(3, H, W)`` float32 in [0, 1] from a ``(3, H, W)``/``(1, H, W)``/``(H, W)`` tensor or array in [0, 1]
    (uint8 in [0, 255] is divided by 255); values are clamped. Raises SaceError (naming ``what``) for another
    shape or non-finite values."""
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

    arr = to_chw(img).permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def png_bytes(im) -> bytes:
    """A ``PIL.Image`` encoded as PNG bytes."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_pil(im, path: str | os.PathLike) -> Path:
    """Write a ``PIL.Image`` as PNG atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path


def save_png(img: Tensor, path: str | os.PathLike) -> Path:
    """Write one ``(3, H, W)`` [0, 1] image as PNG atomically (see :func:`tensor_to_pil`); returns ``path``."""
    return save_pil(tensor_to_pil(img), path)


#: the most pixels an image read by sace may have (PIL's own decompression-bomb limit is only a warning up to
#: twice its MAX_IMAGE_PIXELS): a 1x1-MB file that claims 100k x 100k pixels is refused before it is decoded
MAX_PIXELS = 64 * 1024 * 1024


def open_rgb(path: str | os.PathLike, what: str = "image"):
    """Open and fully decode an image file as an RGB ``PIL.Image``.

    Raises:
        SaceError: one line naming the file, for a file that is not an image, a truncated one, or one with more
            than :data:`MAX_PIXELS` pixels (a decompression bomb), checked from the header before decoding.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise SaceError(f"{what} {path} has {im.width}x{im.height} pixels, more than sace reads "
                                    f"({MAX_PIXELS:,}; a decompression bomb?); remove or shrink it")
                return im.convert("RGB")
    except SaceError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SaceError(f"{what} {path} is not a readable image ({str(e).splitlines()[0][:200]}); remove or "
                        f"replace it") from None
    except (OSError, ValueError, SyntaxError) as e:   # truncated / corrupt data (PIL raises all three)
        raise SaceError(f"{what} {path} is not a readable image ({str(e).splitlines()[0][:200]}); remove or "
                        f"replace it") from None


def png_ok(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an image that decodes completely (a truncated PNG left by a killed run is not)."""
    try:
        open_rgb(path)
    except SaceError:
        return False
    return True


def load_png(path: str | os.PathLike) -> Tensor:
    """Read a PNG as ``(3, H, W)`` float32 in [0, 1].

    Raises:
        SaceError: not an image, truncated, or too many pixels (:func:`open_rgb`).
    """
    arr = np.asarray(open_rgb(path), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


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
        images = torch.stack([to_chw(im, f"image {i}") for i, im in enumerate(images)]) if images else None
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
        nrow: images per row (as in ``nrow`` as in ``torchvision.utils.make_grid``).
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
    return save_pil(grid_image(images, nrow, row_labels, col_labels, upscale, title, pad), path)
