"""``sace export``: an adapter folder -> a model folder others can serve, with its model card.

* gate over every scale (``shared`` or ``scales:0,..,K-1``): the low-rank update is folded into the base
  weights (:func:`sace.shipping.merge.fold_adapters`) and the folder holds the family's own checkpoint layout
  (``transformer.safetensors`` / ``vae.safetensors`` under the official key names, loaded strictly by the same
  loader as the published checkpoints) plus sace's ``model.json`` (configs, schedule, text encoder, domain, the
  merged weights' hashes, and ``merged_from``: base model and adapter);
* gate confined to some scales (the paper's scale-0 gate): no weight matrix reproduces it, so the folder is a
  *gated model* -- ``model.json`` (``"format": "sace.gated-model.v1"``: the base model by name and weight
  hashes, the gate) and the adapter in ``adapter/``; ``--model DIR`` loads the base and attaches the adapter
  (:func:`sace.models.registry.load_model`).

Either way ``MODEL_CARD.md`` (and the same text as ``README.md``, the file the Hugging Face hub shows) is
rendered from the adapter's metadata (:mod:`sace.shipping.card`). The folder is written into a temporary
sibling and renamed at the end: an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..adapters import load_adapter
from ..errors import SaceError
from ..fingerprint import file_hash, model_hashes
from ..io import save_safetensors, write_json, write_text
from ..models.registry import GATED_FORMAT, gated_meta, get_spec, load_model
from ..validation import read_json_file
from .card import attack_rows, render_card
from .merge import fold_adapters, merge_blocker, official_state_dicts

__all__ = ["ExportResult", "check_out", "export_adapter"]


@dataclass
class ExportResult:
    """What :func:`export_adapter` wrote.

    Attributes:
        out: the folder. kind: ``"merged"`` or ``"gated"``. reason: why it could not be merged (gated only).
        base: the base model's name. files: the folder's file names. attack_rows: rows of the card's attack
            table (empty when no attack output was found). seconds: wall time.
    """

    out: Path
    kind: str
    reason: str | None
    base: str
    files: list[str] = field(default_factory=list)
    attack_rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def check_out(out: str | os.PathLike, force: bool) -> None:
    """``out`` may be written: it does not exist (or ``force`` and it is a folder), and it is not under a file.

    Raises:
        SaceError: one line naming the problem and the fix.
    """
    out = Path(out)
    if out.exists() and not force:
        raise SaceError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise SaceError(f"{out} exists and is not a folder; choose another --out")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise SaceError(f"--out {out}: {parent} is not a writable folder; choose another path")
            break


def export_adapter(adapter: str | os.PathLike, out: str | os.PathLike, *, force: bool = False,
                   model: str | None = None, attack_dir: str | os.PathLike | None = None, device: str = "cpu",
                   name: str | None = None, license: str = "mit", load_options: dict | None = None) -> ExportResult:
    """Export the adapter folder ``adapter`` as a model folder ``out`` (see the module docstring).

    Args:
        adapter: a local adapter folder (hub ids are resolved by the caller, :mod:`sace.shipping.hub`).
        out: the folder to write; it must not exist unless ``force`` (then it is replaced at the end).
        model: the base model (a name or folder); default: the adapter's recorded ``base_model``.
        attack_dir: a ``sace attack`` output folder whose ``metrics.json`` rows for this adapter go into the
            card; default: the adapter's ``attack_dir`` metadata, or the attack folder the adapter lives in
            (``OUT/adapters/NAME``).
        name: the exported model's name (default: the folder's name). license: the card's license id.
        load_options: extra :func:`~sace.models.registry.load_model` options (checkpoint overrides).
    Returns:
        an :class:`ExportResult`.
    Raises:
        SaceError: ``out`` exists without ``force``; not an adapter folder; an adapter of another base (name
            or weights); an attack folder without ``metrics.json``.
    """
    t0 = time.perf_counter()
    src, out = Path(adapter), Path(out)
    check_out(out, force)
    meta = read_json_file(src / "adapter.json", "adapter") if src.is_dir() else None
    if not isinstance(meta, dict):
        raise SaceError(f"adapter folder not found: {src}" if not src.is_dir() else
                        f"{src / 'adapter.json'} must hold a JSON object")
    base = model or meta.get("base_model")
    if not base:
        raise SaceError(f"{src / 'adapter.json'} records no base_model; give the base with --model")
    if model is not None and gated_meta(model) is None and get_spec(model).name != meta.get("base_model", base):
        # the same check load_adapter makes, before the (possibly large) base model is loaded
        raise SaceError(f"adapter {src} was trained on model {meta.get('base_model')!r}, not {get_spec(model).name!r}")
    attack = _attack_table(src, meta, attack_dir)
    m = load_model(base, device=device, **(load_options or {}))
    ad = load_adapter(m, src)    # checks the base's name and weights: an adapter of another base is an error
    name = name or out.name
    reason = merge_blocker({ad.config.name: ad.config.gate}, m.schedule.num_scales)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    try:
        card_facts = {"kind": "gated" if reason else "merged", "reason": reason, "name": name, "base": m.name,
                      "base_hashes": model_hashes(m), "family": getattr(m.spec, "family", "infinity"),
                      "num_scales": m.schedule.num_scales, "base_repo": getattr(m.spec, "hub_repo", None),
                      "sace_version": __version__, "license": license}
        if reason:
            _write_gated(m, src, meta, tmp, name, base)
        else:
            _write_merged(m, src, meta, tmp, name)
        text = render_card(meta, card_facts, attack)
        write_text(tmp / "MODEL_CARD.md", text)
        write_text(tmp / "README.md", text)    # the hub shows a repo's README.md as its model card
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return ExportResult(out, card_facts["kind"], reason, m.name, files, attack, time.perf_counter() - t0)


def _write_merged(m, src: Path, meta: dict, tmp: Path, name: str) -> None:
    """The merged folder: official-layout weights and ``model.json`` (the base's, with the new hashes)."""
    fold_adapters(m)
    tr, vae = official_state_dicts(m)
    save_safetensors(tmp / "transformer.safetensors", tr)
    save_safetensors(tmp / "vae.safetensors", vae)
    write_json(tmp / "model.json", {**_base_model_json(m), "name": name,
                                    "description": f"{m.name} with the sace adapter {src.name} "
                                                   f"({meta.get('method', 'SACE')}, concept "
                                                   f"{_concepts(meta)}) merged into its weights",
                                    "hashes": model_hashes(m),
                                    "merged_from": {"base_model": m.name, "base_hashes": meta.get("weights_hashes"),
                                                    "adapter": src.name, "adapter_hash":
                                                        file_hash(src / "adapter.safetensors"),
                                                    "gate": meta["config"]["gate"]}})


def _write_gated(m, src: Path, meta: dict, tmp: Path, name: str, base: str) -> None:
    """The gated folder: the adapter's files in ``adapter/`` and ``model.json`` naming the base by hash."""
    (tmp / "adapter").mkdir()
    for f in ("adapter.safetensors", "adapter.json"):
        shutil.copyfile(src / f, tmp / "adapter" / f)
    write_json(tmp / "model.json", {
        "format": GATED_FORMAT, "name": name, "family": getattr(m.spec, "family", "infinity"),
        "description": f"{m.name} with the scale-gated sace adapter {src.name} ({_concepts(meta)})",
        "base_model": base, "base_hashes": model_hashes(m), "adapter": "adapter", "gate": meta["config"]["gate"],
        "adapter_hash": file_hash(src / "adapter.safetensors"), "sace_version": __version__})


def _base_model_json(m) -> dict:
    """The base model's ``model.json`` content: its folder's file when it has one, else built from its spec."""
    spec = m.spec
    if spec.folder is not None and (Path(spec.folder) / "model.json").is_file():
        return dict(read_json_file(Path(spec.folder) / "model.json", "model"))
    meta = {"family": spec.family, "transformer": m.transformer.cfg.to_dict(), "vae": m.vae.cfg.to_dict(),
            "schedule": m.schedule.to_dict(), "defaults": {"sampling": m.sampling_defaults, **m.method_defaults}}
    if spec.family == "var":
        meta["classes"] = m.classes.source or m.classes.to_list()
    else:
        meta.update(text_encoder=dict(spec.text_encoder), train_interp=m.train_interp, sample_interp=m.sample_interp,
                    trained_schedules=[m.schedule.to_dict()], domain=spec.domain)
    return meta


def _concepts(meta: dict) -> str:
    c = meta.get("concepts") or meta.get("concept")
    if isinstance(c, list):
        return ", ".join(str(x.get("name", x)) if isinstance(x, dict) else str(x) for x in c)
    if isinstance(c, dict):
        return str(c.get("name", "?"))
    return str(c) if c else "?"


def _attack_table(src: Path, meta: dict, attack_dir: str | os.PathLike | None) -> list[dict]:
    """The card's attack rows: from ``attack_dir`` (an error if it has no ``metrics.json``), else from the
    adapter's ``attack_dir`` metadata or the attack folder that holds the adapter (``OUT/adapters/NAME``)."""
    if attack_dir is not None:
        if not (Path(attack_dir) / "metrics.json").is_file():
            raise SaceError(f"--attack-dir {attack_dir} has no metrics.json (not a finished `sace attack` output)")
        return attack_rows(read_json_file(Path(attack_dir) / "metrics.json", "attack"), src)
    for cand in (meta.get("attack_dir"), src.parent.parent if src.parent.name == "adapters" else None):
        if cand and (Path(cand) / "metrics.json").is_file():
            return attack_rows(read_json_file(Path(cand) / "metrics.json", "attack"), src)
    return []


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder onto ``out`` (an existing ``out`` is moved aside first and removed
    after, so a failure in between leaves the old folder or the new one, never a mix)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)    # mkdtemp makes 0700 folders; give the result the usual permissions
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "x")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
