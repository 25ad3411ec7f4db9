"""What every command needs: the global checkpoint options, device and model loading, adapter folder checks,
the console, and the pieces of an output folder's record.

State travels explicitly: the global options live on typer's context object (:class:`CheckpointPaths`), and
each helper takes what it reads as arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import domains
from ..adapters import load_adapters
from ..concepts.judge import Judge, NoDetector, judge_line
from ..errors import SaceError
from ..fingerprint import adapter_hashes, file_hash, model_hashes
from ..models.registry import load_model
from ..shipping.hub import is_repo_id, resolve_folder
from ..validation import device as check_device


@dataclass(frozen=True)
class CheckpointPaths:
    """The global options: checkpoint overrides for every model a command loads (kept on typer's context
    object, not in module state)."""

    transformer_path: str | None = None
    vae_path: str | None = None
    text_encoder: str | None = None


def global_options(
    ctx: typer.Context,
    transformer_path: Annotated[str | None, typer.Option(
        help="Transformer checkpoint for --model infinity-2b/8b: a local .pth/.safetensors file, a sharded "
             "folder, or a file name in the model's Hugging Face repo (default: downloaded from the hub).")] = None,
    vae_path: Annotated[str | None, typer.Option(help="VAE checkpoint (same forms as --transformer-path).")] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder folder or hub id (e.g. a local "
                                                          "google/flan-t5-xl).")] = None,
) -> None:
    """Options given before the command apply to every model it loads."""
    ctx.obj = CheckpointPaths(transformer_path, vae_path, text_encoder)


def device_name(device: str | None) -> str:
    """The checked device of ``--device`` ("" -> cuda when available).

    Raises:
        SaceError: an unknown device name, or CUDA asked for but missing (one line).
    """
    return check_device(device)


@functools.lru_cache(maxsize=64)
def _hub_folder(text: str, what: str) -> Path:
    """A hub id's snapshot folder, fetched once per process (several helpers of one command ask for it)."""
    return resolve_folder(text, what=what)


def adapter_folders(adapters: list[Path] | None) -> list[Path]:
    """The local folders of the ``--adapter`` values: folders as given, hub repo ids (``user/repo[@REV]``)
    as their snapshot in the Hugging Face cache (downloaded first unless ``HF_HUB_OFFLINE=1``).

    Raises:
        SaceError: ``"adapter folder not found: PATH"`` for the first missing folder; a hub id that cannot be
            fetched (one line, see :func:`sace.shipping.hub.resolve_folder`).
    """
    out = []
    for a in adapters or []:
        p = _hub_folder(str(a), "adapter") if is_repo_id(str(a)) else Path(a)
        if not p.is_dir():
            raise SaceError(f"adapter folder not found: {a}")
        out.append(p)
    return out


def check_adapter_folders(adapters: list[Path] | None) -> None:
    """Every ``--adapter`` is an existing folder or a hub repo id that can be fetched (checked before anything
    is loaded).

    Raises:
        SaceError: as :func:`adapter_folders`.
    """
    adapter_folders(adapters)


def model_location(model: str) -> str:
    """``--model`` as :func:`~sace.models.registry.load_model` takes it: a hub repo id (``user/repo[@REV]``,
    not a named model) becomes its snapshot folder in the Hugging Face cache; anything else is kept."""
    return str(_hub_folder(model, "model")) if is_repo_id(model) else model


def load(ctx: typer.Context, model: str, device: str | None, adapters: list[Path] | None = None,
         allow_other_base: bool = False):
    """The model of ``--model`` on ``--device`` with the global checkpoint options of ``ctx``, and
    ``adapters`` loaded into it.

    Raises:
        SaceError: a missing adapter folder (before loading), an unknown model, a bad checkpoint or adapter.
    """
    folders = adapter_folders(adapters)
    m = load_model(model_location(model), device=device_name(device), **asdict(ctx.obj or CheckpointPaths()))
    if folders:
        load_adapters(m, [str(a) for a in folders], allow_other_base=allow_other_base)
    return m


def console() -> Console:
    """A rich console on stdout."""
    return Console(stderr=False)


def adapter_paths(adapters: list[Path] | None) -> list[str]:
    """The ``--adapter`` folders as strings, hub ids resolved to their cache folders (empty when none)."""
    return [str(a) for a in adapter_folders(adapters)]


def comma_list(text: str) -> list[str]:
    """The stripped, non-empty items of a comma list (``"a, b,,c"`` -> ``["a", "b", "c"]``)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def file_digest(path: Path | None) -> str | None:
    """The content hash of ``path``, or ``None`` when no file is given or it is not a file."""
    return file_hash(path) if path is not None and Path(path).is_file() else None


def output_record(m, adapters: list[Path] | None, **settings) -> dict:
    """The record an output folder keeps to recognise a rerun: the model's name and weight hashes, the
    adapters' file hashes, then ``settings`` in the order given."""
    return {"model": m.name, "hashes": model_hashes(m), "adapter_files": adapter_hashes(adapter_folders(adapters)),
            **settings}


def written_at_end(out: Path, what: str) -> Callable[[], str]:
    """The interrupt note of a command that writes its results only at the end."""
    return lambda: f"nothing was written to {out} ({what} writes its results at the end); run the command again"


def detector_help() -> str:
    """The ``--detector`` help text: the choices of the one policy (:func:`sace.domains.judge_for`)."""
    return ("auto (the model's domain decides: the fashion classifier for a fashion class, a preset's own "
            "detector, e.g. NudeNet for nudity, the ImageNet classifier for church; NudeNet for a nudity "
            "concept on any model), " + ", ".join(domains.detector_choices()[1:]) + ".")


def show_judge(c: Console, model, concept, detector, *, prompt: str | None = None, threshold: float = 0.6,
               required: bool = False, without: str = "nothing was checked") -> Judge | NoDetector:
    """Resolve the judge of ``concept`` on ``model`` (:func:`sace.domains.judge_for`) and print its line
    (:func:`~sace.concepts.judge.judge_line`); returns the judge, or the reason there is none.

    Raises:
        SaceError: ``required`` and no detector (one line: the reason and the ``--detector`` choices); an
            unknown detector.
    """
    try:
        judge = domains.judge_for(model, concept, detector, prompt=prompt, threshold=threshold)
    except NoDetector as e:
        if required:
            raise SaceError(f"{e}; this command needs a judge: give --detector "
                            f"({', '.join(domains.detector_choices()[1:-1])})") from None
        judge = e
    c.print(judge_line(judge, without), highlight=False, markup=False, soft_wrap=True)
    return judge
