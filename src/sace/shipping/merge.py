"""Folding scale-gated low-rank adapters into the base weights, and the family's own checkpoint layout.

An adapter adds ``delta(x) = (alpha / r) B A x`` (LoRA; ``D x`` for a full delta) to a linear layer's output on
the tokens of its gated scales (:mod:`sace.adapters.layers`). When the gate covers **every** scale of the
schedule (``shared``, or ``scales:0,..,K-1``), the delta is applied to every token and every prepared
condition, so it equals a change of the weight itself (LoRA, Hu et al. 2021, §4.1: ``W' = W + (alpha / r) B A``)
and the adapter can be merged. A gate confined to some scales (the paper's scale-0 gate, ``scales:0,..,k``
with k < K-1) changes the layer on some tokens only: no single weight matrix reproduces it, so such an
adapter cannot be merged (:func:`merge_blocker` says why).

The official key names (what the published loaders read; :mod:`sace.models.infinity.checkpoint`,
:mod:`sace.models.var.checkpoint`): Infinity's blocks live under ``block_chunks.{c}.module.{j}.`` and its VAE
under the plain names (``encoder.conv_in.weight``); VAR's names are sace's own.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from ..adapters import AdapterConfig, GatedLinear, adapter_names, detach_adapters
from ..errors import SaceError
from ..models.infinity.checkpoint import vae_key_map

__all__ = ["merge_blocker", "fold_adapters", "official_state_dicts"]


def merge_blocker(gates: dict[str, str], num_scales: int) -> str | None:
    """Why adapters with these gates cannot be folded into the weights, or ``None`` when they can.

    Args:
        gates: adapter name -> gate (``"scale0"``, ``"shared"``, ``"scales:0,1"``).
        num_scales: K, the number of scales of the model's schedule.
    Raises:
        SaceError: an unknown gate.
    """
    every = frozenset(range(num_scales))
    for name, gate in gates.items():
        scales = AdapterConfig(gate=gate).scales()
        if scales is None or scales >= every:
            continue
        return (f"adapter {name!r} is gated on scale(s) {','.join(str(s) for s in sorted(scales))} of {num_scales} "
                f"(gate {gate!r}): it changes the layers only on the tokens of those scales, and no single weight "
                f"matrix does that, so it cannot be merged into the base weights")
    return None


@torch.no_grad()
def fold_adapters(model) -> list[str]:
    """Fold every attached adapter into the base weights (``W <- W + (alpha / r) B A``, or ``W + D``), computed
    in float64 and rounded once to the weight's dtype, then detach the adapters; returns their names.

    Raises:
        SaceError: an adapter whose gate does not cover every scale (see :func:`merge_blocker`); nothing is
            changed then.
    """
    tr = model.transformer
    layers = [m for m in tr.modules() if isinstance(m, GatedLinear)]
    gates = {}
    for m in layers:
        for n, br in m.branches.items():
            gates.setdefault(n, "shared" if br.scales is None else "scales:" + ",".join(map(str, sorted(br.scales))))
    why = merge_blocker(gates, model.schedule.num_scales)
    if why:
        raise SaceError(why)
    names = adapter_names(model)
    for m in layers:
        w = m.base.weight
        acc = w.detach().double()
        for br in m.branches.values():
            if not br.active:
                continue
            acc = acc + _delta(br)
        w.copy_(acc.to(w.dtype))
    detach_adapters(model)
    return names


def _delta(br) -> Tensor:
    """One branch's weight delta ``(out, in)`` in float64."""
    if br.kind == "lora":
        return (br.lora_B.double() @ br.lora_A.double()) * br.scaling
    return br.delta.double()


def official_state_dicts(model) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The (transformer, VAE) state dicts of ``model`` under the official key names of its family, float32,
    contiguous, on the CPU (adapters must be folded or detached first).

    Raises:
        SaceError: adapters still attached; an unknown family.
    """
    if adapter_names(model):
        raise SaceError("fold or detach the adapters before writing the checkpoint layout")
    family = getattr(getattr(model, "spec", None), "family", "infinity")
    tr = {k: v.detach().float().cpu().contiguous() for k, v in model.transformer.state_dict().items()}
    vae = {k: v.detach().cpu().contiguous() for k, v in model.vae.state_dict().items()}
    if family == "var":
        return tr, vae
    if family != "infinity":
        raise SaceError(f"no checkpoint layout known for model family {family!r}")
    cfg = model.transformer.cfg
    per = cfg.depth // cfg.block_chunks
    block = re.compile(r"^blocks\.(\d+)\.")
    tr = {block.sub(lambda m: f"block_chunks.{int(m.group(1)) // per}.module.{int(m.group(1)) % per}.", k): v
          for k, v in tr.items()}
    # the VAE's plain names (the reference's), without the quantize.* aliases of quantizer.* buffers
    ours2plain = {ours: plain for plain, ours in _plain_names(model.vae).items()}
    vae = {ours2plain.get(k, k): v for k, v in vae.items() if not k.startswith("quantize.")}
    return tr, vae


def _plain_names(vae) -> dict[str, str]:
    """plain VAE key -> sace's wrapped key, for every key the two differ in."""
    f = vae_key_map(vae)
    out = {}
    for k in vae.state_dict():
        for suffix in (".conv.weight", ".conv.bias", ".norm.weight", ".norm.bias"):
            if k.endswith(suffix):
                plain = k[: -len(suffix)] + suffix[suffix.rfind("."):]
                if f(plain) == k:
                    out[plain] = k
    return out
