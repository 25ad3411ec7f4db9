"""Building VAR models and loading the official checkpoints as they are published, strictly.

Facts (``shared/docs/reference-models.md`` §3 "Checkpoints"; FoundationVision/VAR ``README.md``, the
Hugging Face repo ``FoundationVision/var``):

* ``vae_ch160v4096z32.pth``: a plain ``VQVAE.state_dict()`` (``encoder.*``, ``decoder.*``, ``quant_conv.*``,
  ``post_quant_conv.*``, ``quantize.embedding.weight``, ``quantize.quant_resi.qresi_ls.{0..3}.*``,
  ``quantize.ema_vocab_hit_SV``).
* ``var_d{16,20,24,30}.pth``: a plain ``VAR.state_dict()`` including the buffers ``lvl_1L``,
  ``attn_bias_for_masking`` and ``blocks.{i}.attn.zero_k_bias``; the reference loads them with ``strict=True``.

Files are read with ``torch.load(weights_only=True)`` or safetensors (:mod:`sace.models.infinity.checkpoint`,
whose strict loader lists missing/unexpected keys and shape mismatches in a :class:`CheckpointError`).
A sace VAR model folder holds ``model.json`` (``"family": "var"``, both configs, class names, defaults),
``transformer.safetensors`` and ``vae.safetensors`` with the official key names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ...errors import SaceError
from ...io import save_safetensors, write_json
from ..infinity.checkpoint import load_into, read_state_dict
from .classes import vocabulary
from .model import VARModel
from .transformer import VARConfig, VARTransformer
from .vqvae import VQVAE, VQVAEConfig


def num_params(tcfg: VARConfig, vcfg: VQVAEConfig) -> dict[str, int]:
    """Parameter counts of transformer and VQVAE, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        t, v = VARTransformer(tcfg), VQVAE(vcfg)
    return {"transformer": sum(p.numel() for p in t.parameters()), "vae": sum(p.numel() for p in v.parameters())}


def build_empty(tcfg: VARConfig, vcfg: VQVAEConfig, device: torch.device, dtype: torch.dtype
                ) -> tuple[VARTransformer, VQVAE]:
    """Modules on ``device`` without a random init (meta build, then ``to_empty``); the VQVAE stays float32."""
    with torch.device("meta"):
        tr, vae = VARTransformer(tcfg), VQVAE(vcfg)
    tr = tr.to(dtype).to_empty(device=device)
    vae = vae.to_empty(device=device)
    return tr, vae


def load_weights(tr: VARTransformer, vae: VQVAE, transformer_file: str | os.PathLike,
                 vae_file: str | os.PathLike) -> None:
    """Fill both modules strictly from official (or sace-saved) state dicts.

    Raises:
        CheckpointError: missing or unexpected keys, shape mismatches or NaN/inf tensors (all listed).
    """
    load_into(tr, read_state_dict(transformer_file), source=str(transformer_file), masks=("attn_bias_for_masking",))
    load_into(vae, read_state_dict(vae_file), source=str(vae_file))
    # the buffers are architecture facts: a checkpoint of another scale layout would have failed on shapes,
    # and the mask is rebuilt so that a low-precision transformer keeps an exact 0/-inf
    tr.reset_buffers()


def load_var_model(spec, device: torch.device, dtype: torch.dtype | None, transformer_file: Path,
                   vae_file: Path, **_options) -> VARModel:
    """A :class:`VARModel` for a registry spec (``spec.transformer``: :class:`VARConfig`, ``spec.vae``:
    :class:`VQVAEConfig`, ``spec.classes``: a vocabulary spec), weights loaded strictly. The registry's
    text-encoder options (``_options``) do not apply to a class-conditional model."""
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" and spec.transformer.embed_dim >= 1024 else torch.float32
    tr, vae = build_empty(spec.transformer, spec.vae, device, dtype)
    load_weights(tr, vae, transformer_file, vae_file)
    m = VARModel(tr, vae, vocabulary(spec.classes), name=spec.name, defaults=spec.defaults)
    m.spec = spec
    return m.eval()


def spec_fields_from_meta(meta: dict, path: Path | None = None) -> dict:
    """The VAR-specific ``ModelSpec`` fields of a saved folder's ``model.json`` (``path``: for messages).

    Raises:
        SaceError: missing or malformed transformer/VQVAE configs.
    """
    try:
        return {"transformer": VARConfig(**meta["transformer"]), "vae": VQVAEConfig(**meta["vae"]),
                "classes": meta.get("classes", "imagenet-1k"), "text_encoder": {"kind": "none"}}
    except (KeyError, TypeError) as e:
        raise SaceError(f"model.json of a VAR model is missing or has bad configs ({e})") from e


def save_var_model(model: VARModel, folder: str | os.PathLike, *, description: str = "",
                   extra: dict | None = None) -> Path:
    """Write a VAR model folder (``model.json``, ``transformer.safetensors``, ``vae.safetensors``) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(folder / "transformer.safetensors",
                     {k: v.float().contiguous() for k, v in model.transformer.state_dict().items()})
    save_safetensors(folder / "vae.safetensors", {k: v.contiguous() for k, v in model.vae.state_dict().items()})
    classes = model.classes.source or model.classes.to_list()
    meta = {"name": model.name, "description": description, "family": "var",
            "transformer": model.transformer.cfg.to_dict(), "vae": model.vae.cfg.to_dict(),
            "schedule": model.schedule.to_dict(), "classes": classes,
            "defaults": {"sampling": model.sampling_defaults, **model.method_defaults}, **(extra or {})}
    write_json(folder / "model.json", meta)
    return folder
