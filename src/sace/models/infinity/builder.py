"""The Infinity family's entry in the model registry (:data:`sace.models.registry.FAMILIES`): parameter
counts, the ``model.json`` fields of a saved folder, and loading a spec's checkpoints into an
:class:`~sace.models.infinity.model.InfinityModel` (strict keys and shapes, schedule and weight checks).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ...errors import CheckpointError
from ...validation import check_model_json
from ..checks import check_schedule, check_text_encoder, check_weights
from .checkpoint import load_into, read_state_dict, transformer_key_map, vae_key_map
from .model import InfinityModel
from .shapes import COMPARED, describe_mismatch, file_shapes, infer_transformer_config
from .transformer import InfinityConfig, InfinityTransformer
from .vae import BSQVAE, VAEConfig


def num_params(tcfg: InfinityConfig, vcfg: VAEConfig) -> dict[str, int]:
    """Parameter counts of the transformer and the VAE, computed on the meta device (nothing allocated)."""
    with torch.device("meta"):
        t = InfinityTransformer(tcfg)
        v = BSQVAE(vcfg)
    return {"transformer": sum(p.numel() for p in t.parameters()), "vae": sum(p.numel() for p in v.parameters())}


def spec_fields_from_meta(meta: dict, path: Path) -> dict:
    """The Infinity-specific ``ModelSpec`` fields of a saved folder's ``model.json`` (validated first).

    Raises:
        SaceError: a missing section, unknown key or wrong type (one line naming it).
    """
    check_model_json(meta, path)
    return {"transformer": InfinityConfig(**meta["transformer"]), "vae": VAEConfig(**meta["vae"]),
            "text_encoder": meta.get("text_encoder", {"kind": "none"}),
            "train_interp": meta.get("train_interp", "trilinear"),
            "sample_interp": meta.get("sample_interp", "trilinear"),
            "hashes": dict(meta.get("hashes") or {}), "trained_schedules": list(meta.get("trained_schedules") or [])}


def load_infinity_model(spec, device: torch.device, dtype: torch.dtype | None, transformer_file: Path,
                        vae_file: Path, *, overridden: dict[str, bool], text_encoder: str | None = None,
                        load_text_encoder: bool = True, bf16_cross_attn: bool = False) -> InfinityModel:
    """An :class:`InfinityModel` for a registry spec, weights loaded strictly (see
    :func:`sace.models.registry.load_model` for the arguments).

    Raises:
        SaceError / CheckpointError: schedule not supported, keys or shapes that do not match, weights that
            differ from the recorded hashes, a text encoder of the wrong width.
    """
    from ..registry import build_text_encoder  # the registry imports this module for its FAMILIES entry

    check_schedule(spec)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" and spec.transformer.embed_dim >= 1024 else torch.float32
    check_transformer_file(spec, transformer_file)
    with torch.device("meta"):
        tr = InfinityTransformer(spec.transformer)
        vae = BSQVAE(spec.vae)
    # materialise on the target device without a random init, then fill from the checkpoint; the dtype
    # is set on the meta device first so that no float32 copy of the transformer is ever allocated
    tr = tr.to(dtype).to_empty(device=device)
    vae = vae.to_empty(device=device)
    _rebuild_buffers(tr, vae)
    load_into(tr, read_state_dict(transformer_file),
              transformer_key_map(spec.transformer.depth, spec.transformer.block_chunks),
              source=str(transformer_file), fix_cfg_uncond=True)
    load_into(vae, read_state_dict(vae_file), vae_key_map(vae), source=str(vae_file))
    check_weights(spec, tr, vae, overridden=overridden)
    enc = build_text_encoder(spec.text_encoder, device=device, override=text_encoder) if load_text_encoder else None
    check_text_encoder(spec, enc)
    m = InfinityModel(tr, vae, enc, spec.schedule, name=spec.name, train_interp=spec.train_interp,
                      sample_interp=spec.sample_interp, defaults=spec.defaults)
    m.set_bf16_cross_attn(bf16_cross_attn)
    m.spec = spec
    return m.eval()


def check_transformer_file(spec, path: str | os.PathLike) -> None:
    """Check ``spec``'s transformer configuration against the file's tensor shapes before anything is loaded.

    Raises:
        CheckpointError: depth, width, bits per token, heads or text channels differ; the message says what
            the file looks like and which named model fits it (e.g. ``use --model infinity-125m``).
    """
    from ..registry import builtin_specs  # the registry imports this module for its FAMILIES entry

    found = infer_transformer_config(file_shapes(path))
    if any(f in found and getattr(spec.transformer, f) != found[f] for f in COMPARED):
        named = {n: s.transformer for n, s in builtin_specs().items() if s.family == "infinity"}
        raise CheckpointError(f"{path} does not fit model {spec.name}: "
                              + describe_mismatch(spec.name, spec.transformer, found, named))


def _rebuild_buffers(tr: InfinityTransformer, vae: BSQVAE) -> None:
    """Buffers that checkpoints may carry but that are defined by the architecture."""
    for m in tr.modules():
        if hasattr(m, "zero_k_bias"):
            m.zero_k_bias.zero_()
    d = vae.codebook_dim
    vae.quantizer.lfq.mask.copy_(2 ** torch.arange(d - 1, -1, -1))

