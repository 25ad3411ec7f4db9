"""``sace demo``: the main job on the embedded model, ending in one report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import validation as v
from ..recipes.demo import run_demo
from .common import console, device_name
from .options import DeviceOpt


def demo(
    out: Annotated[Path, typer.Option(help="Output folder (report.html, metrics.json, issa/, adapter/).")
                   ] = Path("out/demo"),
    concept: Annotated[str, typer.Option(help="Fashion class to erase.")] = "sneaker",
    anchor: Annotated[str, typer.Option(help="Anchor class.")] = "sandal",
    seeds: Annotated[int, typer.Option(help="ISSA seeds.")] = 16,
    n_per_class: Annotated[int, typer.Option(help="Evaluation images per class.")] = 50,
    device: DeviceOpt = "",
) -> None:
    """The main job on the embedded model: ISSA of the concept, SACE erasure, evaluation of the original,
    SACE and S-VARE (plus the training-free baselines) on the same seeds, and one report.html."""
    v.count("--seeds", seeds)                 # before the 4-minute run, not after it
    v.count("--n-per-class", n_per_class)
    v.output_dir(out)
    path = run_demo(out, concept=concept, anchor=anchor, seeds=seeds, n_per_class=n_per_class,
                    device=device_name(device))
    console().print(f"report: {path}")
