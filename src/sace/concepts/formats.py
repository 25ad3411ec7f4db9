"""Published adversarial prompt sets: their CSV formats (users download the files; the loader is
:func:`sace.concepts.prompts.load_adversarial_prompts`).

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

``sace evaluate --prompts FILE`` recognises the same formats through :func:`prompt_column_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SaceError

__all__ = ["PromptFormat", "FORMATS", "detect_format", "prompt_column_of"]


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
