"""``sace train``: build the embedded models from raw data with their recipes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..recipes.fashion import FashionRecipe, build_fashion
from ..recipes.fashion_var import FashionVARRecipe, build_fashion_var
from .common import console


def _built(folder, t0: float) -> None:
    """Print where the model went and the minutes since ``t0`` (a ``time.perf_counter()``)."""
    console().print(f"built {folder} in {(time.perf_counter() - t0) / 60:.1f} min")


def train_fashion(
    out: Annotated[Path, typer.Option(help="Work folder (checkpoints, logs, model/).")] = Path("runs/fashion"),
    install: Annotated[bool, typer.Option("--install", help="Copy the result into the package as the "
                                                            "default model.")] = False,
    only: Annotated[str | None, typer.Option(help="Stop after: classifier, vae or transformer.")] = None,
    steps: Annotated[int | None, typer.Option(help="Transformer steps (default: the recipe's).")] = None,
) -> None:
    """Build the embedded 'fashion' model from Debian's Fashion-MNIST files: classifier, BSQ VAE, transformer,
    model card (resumable; about an hour on 2 CPU cores)."""
    r = FashionRecipe()
    if steps:
        r.steps = steps
    t = time.perf_counter()
    _built(build_fashion(out, r, install=install, only=only), t)


def train_fashion_var(
    out: Annotated[Path, typer.Option(help="Work folder (checkpoints, logs, model/).")] = Path("runs/fashion-var"),
    only: Annotated[str | None, typer.Option(help="Stop after: vae.")] = None,
    vae_steps: Annotated[int | None, typer.Option(help="VQVAE steps (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Transformer steps (default: the recipe's).")] = None,
    subset: Annotated[int, typer.Option(help="Train on this many images (0: all; for smoke runs).")] = 0,
) -> None:
    """Build the class-conditional 'fashion-var' model (VAR architecture) from Fashion-MNIST (resumable)."""
    r = FashionVARRecipe(train_subset=subset)
    r.vae_steps, r.steps = vae_steps or r.vae_steps, steps or r.steps
    t = time.perf_counter()
    _built(build_fashion_var(out, r, only=only), t)


def train_app() -> typer.Typer:
    """The ``sace train`` group: ``fashion`` and ``fashion-var``."""
    group = typer.Typer(no_args_is_help=True, help="Train the embedded models from raw data.")
    group.command("fashion")(train_fashion)
    group.command("fashion-var")(train_fashion_var)
    return group
