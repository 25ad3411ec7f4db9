"""Loading official Infinity checkpoints as they are published, strictly.

Facts (``shared/docs/reference-models.md`` §1.9):

* ``infinity_2b_reg.pth``: a plain state dict with blocks under ``block_chunks.{c}.module.{j}.``
  (global block ``c * depth/chunks + j``); trainer checkpoints nest it under ``['trainer']['gpt_fsdp']``.
* Infinity-8B: a sharded Hugging Face-style folder (an ``*.index.json`` plus shards).
* VAE ``.pth``: ``torch.load(...)['vae']`` (or ``['ema']``); keys either wrapped
  (``encoder.conv_in.conv.weight``, ``...norm1.norm.weight``) or plain (``encoder.conv_in.weight``).
* ``cfg_uncond`` is padded/truncated when ``text_maxlen`` differs (the reference's ``load_state_dict``).

Everything is read with ``safetensors`` or ``torch.load(weights_only=True)``. Missing or unexpected
keys and shape mismatches raise :class:`~sace.errors.CheckpointError` listing them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from ...errors import CheckpointError, SaceError
from ...io import load_safetensors, torch_load_weights
from .vae import Conv, Normalize

_CONTAINER_KEYS = ("vae", "ema", "state_dict", "model", "module", "gpt_fsdp", "gpt_ema_fsdp")


def resolve(spec: str | os.PathLike, filename: str | None = None) -> Path:
    """A local path, or ``org/repo`` (optionally with ``filename``) downloaded from the Hugging Face hub.

    Raises:
        SaceError: the path does not exist and the hub cannot be reached (offline) or has no such file.
    """
    p = Path(spec)
    if p.exists():
        return p / filename if filename and p.is_dir() and (p / filename).exists() else p
    s = str(spec)
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", s) and not s.startswith((".", "/")):
        try:
            from huggingface_hub import hf_hub_download, snapshot_download
        except ImportError as e:  # pragma: no cover
            raise SaceError("downloading from the hub needs huggingface_hub: pip install huggingface_hub") from e
        try:
            if filename:
                return Path(hf_hub_download(s, filename))
            return Path(snapshot_download(s))
        except Exception as e:  # noqa: BLE001 - any hub failure is reported the same way
            raise SaceError(f"cannot fetch {s}{'/' + filename if filename else ''} from the Hugging Face hub "
                            f"({type(e).__name__}); download it where you have network and pass the local path"
                            ) from e
    raise SaceError(f"checkpoint not found: {spec} (give an existing file/folder or a hub id org/repo)")


def _unwrap(obj) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint container ({'vae': ...}, {'trainer': {'gpt_fsdp': ...}})."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        if "trainer" in obj and isinstance(obj["trainer"], dict):
            return _unwrap(obj["trainer"])
        for k in _CONTAINER_KEYS:
            if k in obj and isinstance(obj[k], dict):
                return _unwrap(obj[k])
    raise CheckpointError("the checkpoint holds no state dict (expected a dict of tensors, or one under "
                          f"{', '.join(_CONTAINER_KEYS)} / trainer.gpt_fsdp)")


def read_state_dict(path: str | os.PathLike) -> Iterator[dict[str, torch.Tensor]]:
    """Yield state-dict pieces from a file (one piece) or a sharded folder (one per shard, streamed so
    that an 8B model never sits in memory twice)."""
    path = Path(path)
    if path.is_dir():
        index = sorted(path.glob("*.index.json"))
        if index:
            try:
                weight_map = json.loads(index[0].read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index[0]} is not a valid shard index ({e})") from e
            shards = sorted(set(weight_map.values()))
        else:
            shards = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".bin", ".pt"))
        if not shards:
            raise CheckpointError(f"no weight files in folder {path}")
        for s in shards:
            yield from read_state_dict(path / s)
        return
    if path.suffix == ".safetensors":
        yield load_safetensors(path)
    else:
        yield _unwrap(torch_load_weights(path))


def _normalize_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for pre in ("module.", "_orig_mod."):
            if k.startswith(pre):
                k = k[len(pre):]
        out[k.replace("._orig_mod.", ".").replace("._fsdp_wrapped_module.", ".")] = v
    return out


def transformer_key_map(depth: int, block_chunks: int) -> callable:
    """Map an official key (``block_chunks.{c}.module.{j}.x``) to ours (``blocks.{c*n+j}.x``)."""
    per = depth // block_chunks
    pat = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.")

    def f(k: str) -> str:
        m = pat.match(k)
        if m:
            return f"blocks.{int(m.group(1)) * per + int(m.group(2))}." + k[m.end():]
        return k

    return f


def vae_key_map(vae: nn.Module) -> callable:
    """Map plain VAE keys (``encoder.conv_in.weight``) to the wrapped form our modules use."""
    plain2ours: dict[str, str] = {}
    for name, mod in vae.named_modules():
        inner = "conv" if isinstance(mod, Conv) else "norm" if isinstance(mod, Normalize) else None
        if inner:
            for p in ("weight", "bias"):
                plain2ours[f"{name}.{p}"] = f"{name}.{inner}.{p}"
    return lambda k: plain2ours.get(k, k)


def _fmt(keys: Iterable[str], n: int = 12) -> str:
    keys = sorted(keys)
    head = ", ".join(keys[:n])
    return head + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_into(module: nn.Module, pieces: Iterable[dict[str, torch.Tensor]], key_map=None,
              source: str = "checkpoint", fix_cfg_uncond: bool = False, masks: tuple[str, ...] = ()) -> None:
    """Copy checkpoint tensors into ``module`` strictly.

    Args:
        module: the model to fill (its dtype/device are kept; tensors are cast on copy).
        pieces: state-dict pieces (see :func:`read_state_dict`).
        key_map: maps checkpoint keys to module keys.
        fix_cfg_uncond: pad/truncate ``cfg_uncond`` rows to the module's text_maxlen (as the reference).
        masks: module keys of additive attention masks, where -inf is a value and not corruption.
    Raises:
        CheckpointError: missing keys, unexpected keys or shape mismatches (each listed), or a NaN/inf
            tensor.
    """
    own = module.state_dict()
    seen: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    nonfinite: list[str] = []
    with torch.no_grad():
        for sd in pieces:
            for k, v in _normalize_prefixes(sd).items():
                ok = key_map(k) if key_map else k
                if ok not in own:
                    # an alias buffer such as quantize.lfq.mask maps to the same tensor as quantizer.*
                    unexpected.append(k)
                    continue
                tgt = own[ok]
                if fix_cfg_uncond and ok.endswith("cfg_uncond") and v.shape[1:] == tgt.shape[1:]:
                    n = min(v.shape[0], tgt.shape[0])
                    # extra rows: zeros (the module may be uninitialised memory when built on the meta device)
                    v = torch.cat([v[:n].to(tgt.dtype), v.new_zeros(tgt.shape[0] - n, *tgt.shape[1:], dtype=tgt.dtype)]
                                  ) if n < tgt.shape[0] else v[:n]
                if tuple(v.shape) != tuple(tgt.shape):
                    mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(tgt.shape)}")
                    continue
                if v.is_floating_point() and ok not in masks and not bool(torch.isfinite(v).all()):
                    nonfinite.append(k)
                tgt.copy_(v.to(tgt.dtype))
                seen.add(ok)
            sd = v = None  # release this piece before the next shard is read (one shard in memory at a time)
    # ``quantize.*`` is an alias of ``quantizer.*`` in the VAE: either copy satisfies both names
    for k in list(seen):
        for a, b in (("quantizer.", "quantize."), ("quantize.", "quantizer.")):
            if k.startswith(a) and (b + k[len(a):]) in own:
                seen.add(b + k[len(a):])
    missing = [k for k in own if k not in seen]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_fmt(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_fmt(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_fmt(mismatched, 6)}")
    if nonfinite:
        problems.append(f"{len(nonfinite)} tensors with NaN/inf: {_fmt(nonfinite)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model config: " + "; ".join(problems)
                              + " (wrong model name/config, or a truncated/corrupt file?)")
