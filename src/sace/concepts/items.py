"""Evaluation items: one image to generate and judge (prompt, seed, ground-truth class, group), and the items
of a prompt file.

The groups are ``target`` (prompts of the erased concept), ``heldout`` (its held-out paraphrases), ``other``
(the other classes of a domain) and ``prompts`` (a prompt file's rows or a concept's retain prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .prompts import PromptSet

__all__ = ["EvalItem", "items_from_prompt_set"]


@dataclass
class EvalItem:
    """One image to generate: prompt, seed, ground-truth class index (or None) and group
    (``target``, ``heldout``, ``other``, ``prompts``)."""

    prompt: str
    seed: int
    label: int | None
    group: str


def items_from_prompt_set(ps: PromptSet, class_names: Sequence[str] | None = None,
                          group: str = "prompts") -> list[EvalItem]:
    """Items of a loaded :class:`~sace.concepts.prompts.PromptSet` (seeds from ``evaluation_seed`` when
    present, else the row index, reduced modulo 2**63; labels mapped to class indices when ``class_names``
    is given, matched case-insensitively, ``None`` for a label that is no class)."""
    seeds = ps.seeds if ps.seeds is not None else list(range(len(ps.prompts)))
    labels: list[int | None] = [None] * len(ps.prompts)
    if ps.labels is not None and class_names is not None:
        norm = {n.lower(): i for i, n in enumerate(class_names)}
        labels = [norm.get(str(lab).strip().lower()) for lab in ps.labels]
    return [EvalItem(p, int(s) % (2**63), lab, group) for p, s, lab in zip(ps.prompts, seeds, labels)]
