"""The exported model's card (``MODEL_CARD.md``), rendered with jinja2 from the adapter's metadata.

Hugging Face card conventions (https://huggingface.co/docs/hub/model-cards): a YAML header (``license``,
``base_model``, ``library_name``, ``pipeline_tag``, ``tags``), then what the model is, how to use it, its intended
use and limitations, and how it was evaluated. Every number in the card comes from the adapter folder
(``adapter.json``: concept, anchors, the pre-training audit, the post-training check) or from a ``sace attack``
output (``metrics.json``: the ASR rows of this adapter and of the original model); missing sections say that
nothing was measured instead of leaving numbers out silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import jinja2

__all__ = ["attack_rows", "render_card"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _same_folder(a: str | os.PathLike | None, b: Path) -> bool:
    try:
        return a is not None and Path(a).resolve() == b.resolve()
    except OSError:
        return False


def attack_rows(metrics: dict, adapter: str | os.PathLike) -> list[dict]:
    """The rows of a ``sace attack`` ``metrics.json`` that attacked ``adapter`` (``metrics["adapters"]``
    maps each concept's row labels to the adapter folders they stand for), each followed by the original
    model's row of the same attack and concept (the reference), as ``{"concept", "attack", "target", "asr",
    "asr_unattacked", "attempts", "successes", "budget"}`` dicts; empty when the adapter was not attacked there."""
    folder = Path(adapter)
    out = []
    for concept, rows in (metrics.get("concepts") or {}).items():
        labels = {label for label, f in ((metrics.get("adapters") or {}).get(concept) or {}).items()
                  if _same_folder(f, folder)}
        mine = [r for r in rows if r.get("target") in labels]
        for r in mine:
            ref = next((o for o in rows if o.get("target") == "original" and o.get("attack") == r.get("attack")), None)
            for row, label in ((r, "this adapter"), (ref, "original model")):
                if row is None:
                    continue
                budget = row.get("budget") or {}
                out.append({"concept": concept, "attack": row.get("attack"), "target": label,
                            "asr": row.get("asr"), "asr_unattacked": row.get("asr_unattacked"),
                            "attempts": row.get("attempts"), "successes": row.get("successes"),
                            "budget": _budget(budget)})
    return out


def _budget(b: dict) -> str:
    """``{"unit": "queries", "per_prompt": 2}`` -> ``"2 queries per prompt"`` (other layouts as key value)."""
    if "unit" in b and "per_prompt" in b:
        return f"{b['per_prompt']} {b['unit']} per prompt"
    return ", ".join(f"{k} {v}" for k, v in b.items())


def _concepts(meta: dict) -> list[dict]:
    c = meta.get("concepts") or meta.get("concept") or []
    return [x for x in (c if isinstance(c, list) else [c]) if isinstance(x, dict)]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def render_card(meta: dict, facts: dict, attacks: list[dict]) -> str:
    """``MODEL_CARD.md`` text for an exported adapter.

    Args:
        meta: the adapter's ``adapter.json``.
        facts: what the export knows: ``kind`` ("merged"/"gated"), ``reason`` (why not merged), ``name``,
            ``base``, ``base_hashes``, ``family``, ``num_scales``, ``sace_version``, ``license``, and optionally
            ``base_repo`` (the base's hub repo, for ``base_model``).
        attacks: :func:`attack_rows` (may be empty).
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["pct"] = _pct
    concepts = _concepts(meta)
    tags = ["sace", "concept-erasure", "unlearning", "text-to-image", "visual-autoregressive",
            *[f"erased-{c['name']}" for c in concepts if c.get("name")]]
    return env.get_template("MODEL_CARD.md.j2").render(
        meta=meta, f=facts, concepts=concepts, tags=tags, audit=meta.get("audit"), check=meta.get("check"),
        attacks=attacks, config=meta.get("config") or {})
