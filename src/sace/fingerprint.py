"""Fingerprints of what produced a result: weights hashes of a model's transformer and VAE, file hashes of
adapters, digests of prompt lists. Output folders (:mod:`sace.outputs`), adapters and model folders record
them so that results made with other weights or inputs are detected instead of silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

_BASE = re.compile(r"\.base\.(weight|bias)$")


def weights_hash(module: nn.Module, skip: str | None = None) -> str:
    """A short SHA-256 over every tensor of ``module.state_dict()``: its name, shape and first 1024
    elements rounded to bfloat16 (cheap on multi-GB models; any retraining or fine-tuning changes them).

    Args:
        skip: tensors whose name contains this substring are left out (e.g. adapter branches).
    Returns:
        16 hex characters.
    """
    h = hashlib.sha256()
    sd = {}
    for k, v in module.state_dict().items():
        if skip and skip in k:
            continue
        # a layer wrapped for adapters (GatedLinear) keeps its weights under ".base": same weights, same hash
        sd[_BASE.sub(r".\1", k) if skip else k] = v
    for k, v in sorted(sd.items()):
        h.update(k.encode())
        x = v.detach().flatten()[:1024]
        # rounded to bf16 first: the same weights loaded in float32 or bfloat16 (CUDA) hash alike
        x = x.to(torch.bfloat16).float() if x.is_floating_point() else x.float()
        h.update(x.cpu().numpy().tobytes())
        h.update(str(tuple(v.shape)).encode())
    return h.hexdigest()[:16]


def transformer_hash(model) -> str:
    """:func:`weights_hash` of the base transformer (adapter branches excluded)."""
    return weights_hash(model.transformer, skip=".branches.")


def vae_hash(model) -> str:
    """:func:`weights_hash` of the VAE."""
    return weights_hash(model.vae)


def model_hashes(model) -> dict[str, str]:
    """``{"transformer": ..., "vae": ...}`` for a loaded model."""
    return {"transformer": transformer_hash(model), "vae": vae_hash(model)}


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (16 hex characters) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()[:16]


def adapter_hashes(folders: Iterable[str | os.PathLike]) -> list[str]:
    """The file hash of every adapter folder's ``adapter.safetensors`` (in order)."""
    return [file_hash(Path(f) / "adapter.safetensors") for f in folders]


def digest(obj) -> str:
    """SHA-256 (16 hex characters) of a JSON-serialisable object (e.g. the prompt and seed lists)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
