"""The HTML page of a run: an ordered document builder (:class:`Report`) rendered from the jinja2 template
``templates/report.html.j2`` with the inline stylesheet ``templates/report.css`` (package data).

One file, no external resources, no JavaScript: every image is embedded as a ``data:image/png;base64,``
URI, so the page can be mailed, archived or opened offline. Written atomically (:mod:`sace.io`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import json
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from ..errors import SaceError
from ..images import png_bytes, tensor_to_pil
from ..io import write_text
from .plots import DPI
from .tables import html_table, markdown_table, scalar

__all__ = ["Report"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@functools.cache
def _css() -> str:
    return "\n" + resources.files(__package__).joinpath("templates", "report.css").read_text("utf-8")


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    # html.escape (not jinja's markupsafe), as every table of the package escapes text
    env.filters.update(esc=html.escape, paragraphs=_paragraphs,
                       b64=lambda data: base64.b64encode(data).decode("ascii"))
    return env.get_template("report.html.j2")


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
        self._root: list[dict] = []
        self._stack: list[list[dict]] = [self._root]

    # -- building
    def _add(self, **block: Any) -> Report:
        self._stack[-1].append(block)
        return self

    def heading(self, text: str, level: int = 2) -> Report:
        """A heading; ``level`` 1..6 (1 is the page title's level)."""
        if not 1 <= int(level) <= 6:
            raise SaceError(f"heading level must be 1..6, got {level}")
        return self._add(kind="heading", text=str(text), level=int(level))

    def text(self, text: str) -> Report:
        """Plain text; blank lines separate paragraphs; HTML is escaped (shown literally)."""
        return self._add(kind="text", text=str(text))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              caption: str | None = None, floatfmt: str | Mapping[str, str] = "{:.3f}",
              highlight: Mapping[str, str] | None = None) -> Report:
        """A table (see :func:`markdown_table` for the arguments); formatted now, so errors raise here."""
        rows = [dict(r) for r in rows]
        html_s = html_table(rows, columns, floatfmt, highlight, caption)
        md = markdown_table(rows, columns, floatfmt, highlight)
        return self._add(kind="table", html=html_s, markdown=md, caption=caption)

    def kv(self, mapping: Mapping[str, Any], caption: str | None = None, floatfmt: str = "{:.4g}") -> Report:
        """A two-column key/value table (run settings, model card facts, ...)."""
        rows = []
        for k, v in mapping.items():
            v = scalar(v)
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
                        data = png_bytes(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise SaceError(f"{path} is not a readable image ({e})") from e
        elif hasattr(src, "save") and hasattr(src, "size") and not isinstance(src, (torch.Tensor, np.ndarray)):
            data, nat_w = png_bytes(src), src.size[0]
        else:
            im = tensor_to_pil(src)
            data, nat_w = png_bytes(im), im.size[0]
        pixelated = width is None and nat_w < 96
        if pixelated:
            width = nat_w * 4
        return self._add(kind="image", data=data, caption=caption, width=width, path=path, pixelated=pixelated)

    def figure(self, fig: Any, caption: str | None = None, dpi: int = DPI, width: int | None = None) -> Report:
        """A matplotlib ``Figure`` rendered now to PNG at ``dpi`` and embedded (the figure is not closed)."""
        if not hasattr(fig, "savefig"):
            raise SaceError(f"figure() needs a matplotlib Figure, got {type(fig).__name__}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        return self._add(kind="image", data=buf.getvalue(), caption=caption, width=width, path=None,
                         pixelated=False)

    def details(self, summary: str, text: Any) -> Report:
        """A collapsed block (``<details>``) with preformatted text; non-strings (dicts, lists) are shown
        as indented JSON."""
        if not isinstance(text, str):
            text = json.dumps(text, indent=2, default=str, sort_keys=False)
        return self._add(kind="details", summary=str(summary), text=text)

    def html(self, fragment: str) -> Report:
        """A raw HTML fragment, inserted as is (you are responsible for it staying self-contained)."""
        return self._add(kind="html", html=str(fragment))

    @contextlib.contextmanager
    def section(self, title: str | None = None, level: int = 2) -> Iterator[Report]:
        """``with rep.section("Erasure"):`` — blocks added inside go into a ``<section>`` headed by ``title``."""
        children: list[dict] = []
        self._add(kind="section", children=children)
        self._stack.append(children)
        try:
            if title is not None:
                self.heading(title, level)
            yield self
        finally:
            self._stack.pop()

    # -- output
    def to_html(self) -> str:
        """The whole page as one string (inline CSS, images as ``data:image/png;base64,`` URIs, no JS),
        rendered from the package template ``templates/report.html.j2``."""
        return _template().render(title=self.title, subtitle=self.subtitle, css=_css(), blocks=self._root)

    def to_markdown(self, base_dir: str | os.PathLike | None = None) -> str:
        """The page as Markdown: headings, text, tables, details (as ``<details>`` with a code block) and
        images that came from files (linked relative to ``base_dir`` when given, else by the path as given);
        images from tensors/figures are omitted."""
        out = [f"# {_md_text(self.title)}", ""]
        if self.subtitle:
            out += [f"*{_md_text(str(self.subtitle))}*", ""]
        self._md_blocks(self._root, out, base_dir)
        return "\n".join(out).rstrip() + "\n"

    def _md_blocks(self, blocks: list[dict], out: list[str], base_dir) -> None:
        for b in blocks:
            kind = b["kind"]
            if kind == "heading":
                out += ["#" * b["level"] + " " + _md_text(b["text"]), ""]
            elif kind == "text":
                for para in _paragraphs(b["text"]):
                    out += [_md_text(para), ""]
            elif kind == "table":
                if b["caption"]:
                    out += [f"*{_md_text(b['caption'])}*", ""]
                out += [b["markdown"].rstrip("\n"), ""]
            elif kind == "image":
                path, caption = b["path"], b["caption"]
                if path is None:
                    continue
                link = Path(os.path.relpath(path.resolve(), Path(base_dir).resolve())) if base_dir else path
                out += [f"![{caption or path.name}]({link.as_posix()})", ""]
                if caption:
                    out += [f"*{_md_text(caption)}*", ""]
            elif kind == "details":
                fence = "```"
                while fence in b["text"]:
                    fence += "`"
                out += [f"<details><summary>{html.escape(b['summary'])}</summary>", "", fence, b["text"], fence, "",
                        "</details>", ""]
            elif kind == "section":
                self._md_blocks(b["children"], out, base_dir)

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
