"""Fingerprints of what produced a result: weights hashes of a model's transformer and VAE, file hashes of
adapters, digests of prompt lists. Output folders (:mod:`sace.outputs`), adapters and model folders record
them so that results made with other weights or inputs are detected instead of silently mixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

_BASE = re.compile(r"\.base\.(weight|bias)$")


#: the version of :func:`weights_hash` recorded next to the hashes (``"format"`` in model.json's ``hashes``, an
#: adapter's ``weights_hashes`` and the output manifests): v2 hashes every element of every tensor; records
#: without it were taken by v1, which read only the first 1024 elements of each tensor.
FORMAT = "sace.weights.v2"
_CHUNK = 1 << 22   # elements per hashed chunk (8 MB of bfloat16): bounded extra memory on multi-GB models

#: per-tensor digests, keyed by ``id(tensor)`` and valid while the same tensor object is alive with the same
#: storage and in-place version counter (any optimiser step, ``copy_`` or ``load_state_dict`` bumps it), so a
#: command that fingerprints a multi-GB model several times (model.json check, adapter base check, output
#: manifest) reads its weights once.
_DIGESTS: dict[int, tuple] = {}


def _tensor_digest(v: torch.Tensor) -> bytes:
    """SHA-256 of every element of one tensor, rounded to bfloat16 first (the same weights loaded in float32
    or bfloat16 on CUDA hash alike); integer and bool tensors as int64. Hashed in chunks of :data:`_CHUNK`
    elements (bounded extra memory) and cached in :data:`_DIGESTS`."""
    key = (v.data_ptr(), v._version, tuple(v.shape), v.dtype, str(v.device))
    hit = _DIGESTS.get(id(v))
    if hit is not None and hit[0]() is v and hit[1] == key:
        return hit[2]
    h = hashlib.sha256()
    x = v.detach().reshape(-1)
    for i in range(0, x.numel(), _CHUNK):
        c = x[i:i + _CHUNK]
        c = c.to(torch.bfloat16).view(torch.int16) if c.is_floating_point() else c.to(torch.int64)
        h.update(c.cpu().numpy())   # the buffer itself (tobytes() would copy it once more)
    d = h.digest()
    with contextlib.suppress(TypeError):   # a tensor that takes no weak reference is simply not cached
        ref = weakref.ref(v, lambda _r, k=id(v): _DIGESTS.pop(k, None))
        _DIGESTS[id(v)] = (ref, key, d)
    return d


def weights_hash(module: nn.Module, skip: str | None = None, *, partial: bool = False) -> str:
    """A short SHA-256 over every tensor of ``module.state_dict()``: its name, shape and every element rounded
    to bfloat16 (:data:`FORMAT`). Cost: SHA-256 of the bfloat16 bytes (about 1.4 GB/s per CPU core) plus the
    float32 -> bfloat16 rounding of float32 weights; tensors are hashed on ``torch.get_num_threads()`` threads,
    and each tensor once per command (:data:`_DIGESTS`).

    Args:
        skip: tensors whose name contains this substring are left out (e.g. adapter branches).
        partial: the v1 fingerprint (the first 1024 elements of each tensor), only to check records that were
            written before :data:`FORMAT` (they carry no ``"format"``).
    Returns:
        16 hex characters.
    """
    h = hashlib.sha256()
    sd = {}
    for k, v in module.state_dict(keep_vars=True).items():
        if skip and skip in k:
            continue
        # a layer wrapped for adapters (GatedLinear) keeps its weights under ".base": same weights, same hash
        sd[_BASE.sub(r".\1", k) if skip else k] = v
    if not partial:   # tensors are hashed independently: in parallel (hashlib and torch release the GIL)
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            digests = dict(zip(sd, pool.map(_tensor_digest, sd.values())))
    for k, v in sorted(sd.items()):
        h.update(k.encode())
        if partial:   # v1: the first 1024 elements themselves
            x = v.detach().flatten()[:1024]
            x = x.to(torch.bfloat16).float() if x.is_floating_point() else x.float()
            h.update(x.cpu().numpy().tobytes())
        else:
            h.update(digests[k])
        h.update(str(tuple(v.shape)).encode())
    return h.hexdigest()[:16]


def recorded_format(hashes: dict | None) -> str:
    """The fingerprint version of a record of hashes (``"sace.weights.v1"`` when it names none)."""
    return (hashes or {}).get("format") or "sace.weights.v1"


def transformer_hash(model) -> str:
    """:func:`weights_hash` of the base transformer (adapter branches excluded)."""
    return weights_hash(model.transformer, skip=".branches.")


def vae_hash(model) -> str:
    """:func:`weights_hash` of the VAE."""
    return weights_hash(model.vae)


def model_hashes(model) -> dict[str, str]:
    """``{"format": FORMAT, "transformer": ..., "vae": ...}`` for a loaded model."""
    return {"format": FORMAT, "transformer": transformer_hash(model), "vae": vae_hash(model)}


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


def recorded_hash(hashes: dict | None, part: str, module: nn.Module, skip: str | None = None
                  ) -> tuple[str | None, str | None, bool]:
    """Compare ``module``'s weights with a record of hashes (model.json's ``hashes``, an adapter's
    ``weights_hashes``) in the record's own format.

    Returns:
        ``(recorded, current, legacy)``: the recorded hash of ``part`` (``None``: nothing recorded, nothing
        computed), this module's hash in the same format, and whether the record is a v1 one (its match only
        covers the first 1024 elements of each tensor; the caller says so and asks for a re-save).
    """
    want = (hashes or {}).get(part)
    if not want:
        return None, None, False
    legacy = recorded_format(hashes) != FORMAT
    return want, weights_hash(module, skip=skip, partial=legacy), legacy
