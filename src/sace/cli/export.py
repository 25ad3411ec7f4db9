"""``sace export``: an adapter folder -> a model folder (merged weights, or a gated folder) with its model card."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..shipping.export import check_out, export_adapter
from ..shipping.hub import resolve_folder
from .common import CheckpointPaths, console, device_name, model_location

RevisionOpt = Annotated[str | None, typer.Option(help="Hub revision (branch, tag or commit) of a repo id given "
                                                      "without @REV.")]


def export(
    ctx: typer.Context,
    adapter: Annotated[str, typer.Argument(help="Adapter folder, or a Hugging Face repo id (user/repo[@REV]).")],
    out: Annotated[Path, typer.Option(help="Model folder to write (must not exist unless --force).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing OUT (at the end, atomically).")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model (name or folder); default: the "
                                                                    "adapter's recorded base_model.")] = None,
    attack_dir: Annotated[Path | None, typer.Option(help="A `sace attack` output folder whose ASR rows for this "
                                                         "adapter go into the card (default: the attack folder "
                                                         "the adapter was trained in, if any).")] = None,
    revision: RevisionOpt = None,
    name: Annotated[str | None, typer.Option(help="The exported model's name (default: OUT's folder name).")] = None,
    license: Annotated[str, typer.Option(help="License id of the card's YAML header.")] = "mit",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (default: cpu).")] = "cpu",
) -> None:
    """Export an adapter as a model folder with a MODEL_CARD.md (and README.md for the hub). A gate over every
    scale (shared, or scales:0..K-1) is merged into the base weights, written in the family's official checkpoint
    layout plus model.json; a scale-confined gate (e.g. scale0) cannot be merged and gives a gated folder (base by
    hash + adapter + gate) that --model loads. Publish with `hf upload USER/REPO OUT .`."""
    check_out(out, force)     # before a download or a model load
    folder = resolve_folder(adapter, revision=revision, what="adapter")
    res = export_adapter(folder, out, force=force, model=model_location(model) if model else None,
                         attack_dir=attack_dir, device=device_name(device), name=name, license=license,
                         load_options=asdict(ctx.obj or CheckpointPaths()))
    c = console()
    if res.kind == "merged":
        c.print(f"merged the adapter into {res.base}'s weights (official checkpoint layout) -> {out}", highlight=False)
    else:
        c.print(f"not merged: {res.reason}.", soft_wrap=True, highlight=False)
        c.print(f"wrote a gated model folder instead (base {res.base} by hash + adapter + gate) -> {out}; "
                f"load it with --model {out}", soft_wrap=True, highlight=False)
    c.print(f"files: {', '.join(res.files)}; card: {len(res.attack_rows)} attack rows "
            f"({res.seconds:.1f} s)", soft_wrap=True, highlight=False)
