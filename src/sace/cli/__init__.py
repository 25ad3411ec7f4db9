"""The ``sace`` command: a thin layer that parses options and calls the library.

Bad input (unknown model or concept, empty prompt, missing adapter folder, corrupt checkpoint, ...) prints
one line ``error: ...`` and exits with status 2.

This module assembles the typer :data:`app` from the command modules (``generate``: generate and models;
``issa``; ``erase``: erase, audit and concepts; ``evaluate``; ``attack``; ``demo``; ``train``) and runs it in
:func:`main`; the shared options and helpers live in ``options`` and ``common``.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import SaceError
from ..folders import Interrupted
from . import app as app_command
from . import attack, demo, erase, evaluate, export, generate, issa, train
from .common import CheckpointPaths, global_options

__all__ = ["app", "build_app", "main", "CheckpointPaths"]


def build_app() -> typer.Typer:
    """The ``sace`` typer app: the global checkpoint options, every command (in the order ``--help`` lists
    them) and the ``train`` group."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Scale-aware concept erasure (SACE) for visual autoregressive text-to-image models.\n\n"
                           "Inspect where a concept enters generation (issa), erase it into a small scale-0 adapter "
                           "(erase), generate with it (generate) and compare against baselines (evaluate). "
                           "Without --model, everything runs on the embedded CPU model 'fashion'.")
    app.add_typer(train.train_app(), name="train")
    app.callback()(global_options)
    for command in (generate.generate, issa.issa, erase.erase, erase.audit, evaluate.evaluate, erase.concepts,
                    attack.attack, export.export, app_command.app, demo.demo, generate.models):
        app.command()(command)
    return app


app = build_app()


def main() -> None:
    """Entry point: run the typer app; user errors become one line and exit status 2."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # sace's own warnings (other base weights, untrained schedule) as one line each, like the errors
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        app()
    except SaceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: nothing was saved", file=sys.stderr)
        sys.exit(130)
    except Interrupted as e:
        print(f"interrupted: {e.note}", file=sys.stderr)
        sys.exit(130)
