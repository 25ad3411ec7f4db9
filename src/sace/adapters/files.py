"""Adapter folders: ``adapter.safetensors`` (``{adapter}.{module}.lora_A`` / ``lora_B`` / ``delta``) and
``adapter.json`` (base model and its weight hashes, modules, rank, alpha, gate, training metadata), written
atomically and read back strictly (schema, tensor names and shapes, the base weights they were trained on).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from .. import __version__
from ..errors import CheckpointError, SaceError
from ..fingerprint import FORMAT, digest, recorded_hash, transformer_hash, vae_hash
from ..io import load_safetensors, safetensors_metadata, save_safetensors, write_json
from ..validation import check_adapter_json
from .layers import Adapter, AdapterConfig, adapter_names, attach_adapter, detach_adapters

__all__ = ["base_model_hash", "save_adapter", "load_adapter", "load_adapters"]


def base_model_hash(model) -> str:
    """A short SHA-256 of the base transformer's weights (adapter branches excluded; see
    :func:`sace.fingerprint.weights_hash`)."""
    return transformer_hash(model)


def save_adapter(adapter: Adapter, folder: str | os.PathLike, model=None, extra: dict | None = None) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``folder`` (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{adapter.config.name}.{k}": v for k, v in adapter.state_dict().items()}
    meta = {"format": "sace.adapter.v1", "config": asdict(adapter.config), "sace_version": __version__,
            "num_params": adapter.num_params(), "modules": sorted(adapter.modules), **adapter.metadata,
            **(extra or {})}
    if model is not None:
        meta.setdefault("base_model", getattr(model, "name", "?"))
        meta.setdefault("base_model_hash", base_model_hash(model))
        # checked on load (the older base_model_hash was taken with the adapter's own wrapping in the key
        # names, so it never matched the bare model; it stays for information only)
        meta.setdefault("weights_hashes", {"format": FORMAT, "transformer": base_model_hash(model),
                                           **({"vae": vae_hash(model)} if getattr(model, "vae", None) is not None
                                              else {})})
    # the config's digest travels in the weights file's header: an edited adapter.json (another gate, rank,
    # modules) no longer matches the weights it describes, and load_adapter says so
    save_safetensors(folder / "adapter.safetensors", tensors,
                     metadata={"format": "sace.adapter.v1", "config_digest": digest(asdict(adapter.config))})
    write_json(folder / "adapter.json", meta)
    return folder


def load_adapter(model, folder: str | os.PathLike, name: str | None = None, allow_other_base: bool = False
                 ) -> Adapter:
    """Attach the adapter saved in ``folder`` to ``model`` (composing with any already attached).

    Args:
        name: rename the adapter (needed to load the same folder twice).
        allow_other_base: an adapter trained on other weights of the same-named model (its stored
            transformer or VAE hash differs) is only a warning instead of an error (``--allow-other-base``).
    Raises:
        SaceError: folder or files missing, ``adapter.json`` missing a section / with an unknown config key /
            of the wrong JSON type, base model name or weights mismatch.
        CheckpointError: corrupt file, missing/unexpected tensors, wrong shapes, NaN/inf values.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SaceError(f"adapter folder not found: {folder}")
    try:
        meta = json.loads((folder / "adapter.json").read_text())
    except FileNotFoundError as e:
        raise SaceError(f"{folder} has no adapter.json (not a sace adapter folder)") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{folder / 'adapter.json'} is corrupt ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != "sace.adapter.v1":
        fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{folder / 'adapter.json'} is not a sace adapter (format {fmt!r})")
    check_adapter_json(meta, folder / "adapter.json")
    tensors = load_safetensors(folder / "adapter.safetensors")
    cfg = AdapterConfig(**meta["config"])
    saved_name = cfg.name
    if name:
        cfg.name = name
    base = meta.get("base_model")
    if base and getattr(model, "name", None) and base != model.name:
        raise SaceError(f"adapter {folder} was trained on model {base!r}, not {model.name!r}")
    _check_base_weights(model, folder, meta, allow_other_base)
    ad = attach_adapter(model, cfg)
    want = safetensors_metadata(folder / "adapter.safetensors").get("config_digest")
    if want and digest(meta["config"]) != want:
        detach_adapters(model, cfg.name)
        raise CheckpointError(f"{folder / 'adapter.json'}: its config (gate {meta['config'].get('gate')!r}, rank, "
                              f"modules ...) was edited after training and no longer describes the weights; restore "
                              f"it or train a new adapter with these settings")
    expected = {f"{saved_name}.{k}" for k in ad.state_dict()}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        detach_adapters(model, cfg.name)
        raise CheckpointError(f"{folder / 'adapter.safetensors'} does not match its adapter.json: "
                              f"{len(missing)} missing ({', '.join(missing[:5])}), {len(unexpected)} unexpected "
                              f"({', '.join(unexpected[:5])})")
    with torch.no_grad():
        for mname, br in ad.modules.items():
            for pn, p in br.named_parameters():
                t = tensors[f"{saved_name}.{mname}.{pn}"]
                if t.shape != p.shape:
                    detach_adapters(model, cfg.name)
                    raise CheckpointError(f"adapter tensor {mname}.{pn} has shape {tuple(t.shape)}, the model "
                                          f"needs {tuple(p.shape)} (adapter for another model size?)")
                if not torch.isfinite(t).all():
                    detach_adapters(model, cfg.name)
                    raise CheckpointError(f"adapter tensor {mname}.{pn} holds NaN/inf values")
                p.copy_(t)
    ad.metadata = meta
    model.transformer.adapter_set.metadata[cfg.name] = meta
    return ad


def _check_base_weights(model, folder: Path, meta: dict, allow_other_base: bool) -> None:
    """The adapter's recorded transformer / VAE hashes against the loaded model's (in the record's format:
    a record older than :data:`sace.fingerprint.FORMAT` is checked the old way, with a warning)."""
    recorded = meta.get("weights_hashes") or {}
    checks = [("transformer", model.transformer, ".branches.")]
    if getattr(model, "vae", None) is not None:
        checks.append(("VAE", model.vae, None))
    for part, module, skip in checks:
        saved, now, legacy = recorded_hash(recorded, part.lower(), module, skip)
        if saved is None:
            continue
        if saved == now:
            if legacy:
                warnings.warn(f"adapter {folder} records base {part} hashes of an older sace (the first 1024 "
                              f"elements of each tensor); re-save it (sace.adapters.save_adapter) to record {FORMAT} "
                              f"hashes", stacklevel=3)
            continue
        msg = (f"adapter {folder} was trained on other {meta.get('base_model')!r} {part} weights (hash {saved}, "
               f"this model's is {now})")
        if not allow_other_base:
            raise SaceError(msg + "; load the weights it was trained on, or pass --allow-other-base to use it anyway")
        warnings.warn(msg + " (--allow-other-base: used anyway)", stacklevel=3)


def load_adapters(model, folders: Sequence[str | os.PathLike], allow_other_base: bool = False) -> list[Adapter]:
    """Attach several adapters (``--adapter DIR`` repeated); names are made unique when they clash."""
    out = []
    for i, f in enumerate(folders):
        try:
            cfg_name = json.loads((Path(f) / "adapter.json").read_text())["config"]["name"]
        except (OSError, KeyError, TypeError, ValueError):   # load_adapter reports what is wrong
            cfg_name = None
        name = None
        if cfg_name is not None and cfg_name in adapter_names(model):
            name = f"{cfg_name}_{i}"
        out.append(load_adapter(model, f, name=name, allow_other_base=allow_other_base))
    return out
