"""Published adversarial prompt sets: their CSV formats and one loader (users download the files).

Column names, as the sets are distributed (and read by the erasure literature's evaluation scripts):

* **Ring-A-Bell** (Tsai et al., ICLR 2024; e.g. ``nudity-ring-a-bell.csv``, 95 nudity prompts): the prompt is
  in ``sensitive prompt``; no seed column.
* **MMA-Diffusion** (Yang et al., CVPR 2024; ``mma-diffusion-nsfw-adv-prompts``, 1,000 prompts):
  ``target_prompt`` (the explicit prompt), ``adv_prompt`` (the attack, used by default),
  ``sanitized_adv_prompt`` (non-dictionary words removed; format ``mma-diffusion-sanitized``),
  ``success_against_sanitization_defense``, ``clean_prompt``.
* **UnlearnDiffAtk** (Zhang et al., ECCV 2024; ``OPTML-Group/Diffusion-MU-Attack`` ``prompts/*.csv``, I2P
  subsets such as ``nudity.csv``): I2P's columns -- ``prompt``, ``evaluation_seed``, ``evaluation_guidance``,
  ``categories``, ``nudity_percentage`` ... (object/style sets: ``prompt``, ``evaluation_seed``, a label
  column such as ``artist``).

:func:`load_adversarial_prompts` returns a :class:`~sace.evaluation.prompts.PromptSet`; ``sace evaluate
--prompts FILE`` recognises the same formats through :func:`prompt_column_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SaceError
from ..evaluation.prompts import PromptSet, load_prompt_set

__all__ = ["PromptFormat", "FORMATS", "detect_format", "prompt_column_of", "load_adversarial_prompts"]


@dataclass(frozen=True)
class PromptFormat:
    """How one published set stores its prompts: the prompt column and the columns that identify it."""

    name: str
    prompt_column: str
    identifying: tuple[str, ...]
    source: str


FORMATS: dict[str, PromptFormat] = {f.name: f for f in (
    PromptFormat("ring-a-bell", "sensitive prompt", ("sensitive prompt",), "Ring-A-Bell (ICLR 2024)"),
    PromptFormat("mma-diffusion", "adv_prompt", ("adv_prompt",), "MMA-Diffusion (CVPR 2024)"),
    PromptFormat("mma-diffusion-sanitized", "sanitized_adv_prompt", ("sanitized_adv_prompt", "adv_prompt"),
                 "MMA-Diffusion, sanitized adversarial prompts"),
    PromptFormat("unlearndiffatk", "prompt", ("prompt", "evaluation_seed"),
                 "UnlearnDiffAtk (ECCV 2024) I2P subsets"),
)}

_AUTO_ORDER = ("ring-a-bell", "mma-diffusion", "unlearndiffatk")


def detect_format(columns: Sequence[str]) -> str | None:
    """The name of the published format whose identifying columns ``columns`` has (``None`` if none).
    A file with ``prompt`` and ``evaluation_seed`` reads as UnlearnDiffAtk (I2P-style)."""
    cols = set(columns)
    for name in _AUTO_ORDER:
        if set(FORMATS[name].identifying) <= cols:
            return name
    return None


def _known() -> str:
    return "; ".join(f"{f.source}: {f.prompt_column!r}" for f in FORMATS.values())


def prompt_column_of(columns: Sequence[str], path: str | Path = "") -> str:
    """The prompt column of a file with these columns: ``prompt``, or a published format's.

    Raises:
        SaceError: no known prompt column; the message lists the file's columns and the known formats.
    """
    if "prompt" in columns:
        return "prompt"
    fmt = detect_format(columns)
    if fmt is not None:
        return FORMATS[fmt].prompt_column
    shown = ", ".join(repr(c) for c in columns) if columns else "none"
    raise SaceError(f"{path} has no 'prompt' column (columns: {shown}); rename the prompt column to 'prompt' "
                    f"or use a published format ({_known()})")


def load_adversarial_prompts(path: str | Path, format: str = "auto", *, limit: int | None = None,
                             categories: str | Sequence[str] | None = None) -> PromptSet:
    """Read a published adversarial prompt set (Ring-A-Bell, MMA-Diffusion, UnlearnDiffAtk) from its CSV.

    Args:
        path: the CSV file as downloaded.
        format: a key of :data:`FORMATS` or ``"auto"`` (detected from the header).
        limit, categories: as :func:`~sace.evaluation.prompts.load_prompt_set` (categories: I2P subsets).
    Returns:
        A :class:`PromptSet` named after the format; seeds from ``evaluation_seed`` when present; every other
        column (``target_prompt``, ``evaluation_guidance`` ...) in ``columns``.
    Raises:
        SaceError: unknown format, missing file, a file without the format's prompt column, empty prompts.
    """
    import csv

    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise SaceError(f"unknown adversarial prompt format {format!r}; use auto or one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise SaceError(f"prompt file {path} does not exist; download the set and give its path")
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    if format == "auto":
        format = detect_format(header) or ""
        if not format:
            prompt_column_of(header, path)          # raises the clear error unless 'prompt' exists
            format = "plain"
    col = FORMATS[format].prompt_column if format in FORMATS else "prompt"
    if col not in header:
        raise SaceError(f"{path} is not a {format} file: no {col!r} column (columns: {', '.join(header) or 'none'})")
    return load_prompt_set(path, prompt_column=col, limit=limit, categories=categories, skip_empty=True,
                           name=format)
