"""What configuration a transformer checkpoint was saved from, read from its tensor shapes alone.

When a named configuration does not fit a file (``--model infinity-2b`` with the 125M checkpoint, say), the
strict loader's list of mismatched keys does not tell the user what to do; :func:`infer_transformer_config`
reads the architecture back from the shapes and :func:`describe_mismatch` names the registry entry that fits.

Shape facts (the reference ``FoundationVision/Infinity: infinity/models/infinity.py``; our
:class:`~sace.models.infinity.transformer.InfinityTransformer` keeps its parameter names):

* ``word_embed.weight``: ``(C, d)`` -- width C and bits per token d;
* ``head.weight``: ``(2d, C)`` (two logits per bit, ``use_bit_label=1``);
* ``...sa.scale_mul_1H11``: ``(1, H, 1, 1)`` -- attention heads H;
* ``...ffn.fc1.weight``: ``(hidden, C)``; ``cfg_uncond``: ``(text_maxlen, text_channels)``;
* blocks: ``block_chunks.{c}.module.{j}.`` (official files) or ``blocks.{i}.`` (sace folders) -- depth and
  the chunking of the key names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from torch import Tensor

from ...errors import CheckpointError
from ...io import torch_load_weights
from .checkpoint import _unwrap

__all__ = ["infer_transformer_config", "closest_config", "describe_mismatch", "checkpoint_shapes", "file_shapes",
           "COMPARED"]

_CHUNK = re.compile(r"^(?:module\.|_orig_mod\.)*block_chunks\.(\d+)\.module\.(\d+)\.")
_BLOCK = re.compile(r"^(?:module\.|_orig_mod\.)*blocks\.(\d+)\.")


def _strip(k: str) -> str:
    for pre in ("module.", "_orig_mod."):
        while k.startswith(pre):
            k = k[len(pre):]
    return k


def checkpoint_shapes(pieces: Iterable[Mapping[str, Tensor]]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of state-dict pieces (see :func:`~sace.models.infinity.checkpoint.read_state_dict`)."""
    out: dict[str, tuple[int, ...]] = {}
    for sd in pieces:
        out.update({k: tuple(v.shape) for k, v in sd.items()})
    return out


def file_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a checkpoint file or sharded folder without reading the tensors: safetensors
    headers, or ``torch.load(weights_only=True, mmap=True)`` for ``.pth`` (pages are not touched)."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    exts = (".safetensors", ".pth", ".bin", ".pt")
    files = [p] if p.is_file() else sorted(q for q in p.iterdir() if q.suffix in exts)
    out: dict[str, tuple[int, ...]] = {}
    for f in files:
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), "pt") as h:
                    out.update({k: tuple(h.get_slice(k).get_shape()) for k in h.keys()})
            except (SafetensorError, OSError, ValueError, RuntimeError) as e:   # empty, truncated, not one
                raise CheckpointError(f"{f} is not a readable safetensors file ({e}); re-create or re-download "
                                      f"it") from None
        else:
            out.update({k: tuple(v.shape) for k, v in _unwrap(torch_load_weights(f)).items()})
    return out


def infer_transformer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """The transformer hyper-parameters a state dict implies.

    Args:
        shapes: ``{key: shape}`` of a transformer checkpoint (official or sace key names).

    Returns:
        dict with the keys that could be read: ``depth``, ``block_chunks`` (None for ``blocks.{i}`` names),
        ``embed_dim``, ``codebook_dim`` (bits per token), ``num_heads``, ``mlp_hidden``, ``text_channels``,
        ``text_maxlen``. Missing tensors leave their keys out (a file that is not an Infinity transformer
        gives an empty dict).
    """
    s = {_strip(k): v for k, v in shapes.items()}
    out: dict = {}
    chunks: dict[int, set[int]] = {}
    blocks: set[int] = set()
    for k in s:
        m = _CHUNK.match(k)
        if m:
            chunks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
            continue
        m = _BLOCK.match(k)
        if m:
            blocks.add(int(m.group(1)))
    if chunks:
        out["depth"] = sum(len(v) for v in chunks.values())
        out["block_chunks"] = len(chunks)
    elif blocks:
        out["depth"] = len(blocks)
        out["block_chunks"] = None
    if "word_embed.weight" in s and len(s["word_embed.weight"]) == 2:
        out["embed_dim"], out["codebook_dim"] = s["word_embed.weight"]
    elif "head.weight" in s and len(s["head.weight"]) == 2:
        out["codebook_dim"], out["embed_dim"] = s["head.weight"][0] // 2, s["head.weight"][1]
    for k, v in s.items():
        if k.endswith("sa.scale_mul_1H11") and len(v) == 4:
            out["num_heads"] = v[1]
        elif k.endswith("ffn.fc1.weight") and len(v) == 2:
            out["mlp_hidden"] = v[0]
        if "num_heads" in out and "mlp_hidden" in out:
            break
    if "cfg_uncond" in s and len(s["cfg_uncond"]) == 2:
        out["text_maxlen"], out["text_channels"] = s["cfg_uncond"]
    elif "text_norm.weight" in s:
        out["text_channels"] = s["text_norm.weight"][0]
    return out


#: the fields a named configuration must share with a file
COMPARED = ("depth", "embed_dim", "codebook_dim", "num_heads", "text_channels")
_COMPARED = COMPARED
_LABEL = {"depth": "depth", "block_chunks": "block chunks", "embed_dim": "width", "codebook_dim": "bits per token",
          "num_heads": "heads", "mlp_hidden": "MLP hidden", "text_maxlen": "text length", "text_channels":
          "text channels"}


def closest_config(found: Mapping, named: Mapping[str, object]) -> tuple[str | None, list[str]]:
    """The named configuration that matches ``found`` on depth, width, bits, heads and text channels.

    Args:
        found: output of :func:`infer_transformer_config`.
        named: ``{name: InfinityConfig}`` (e.g. the registry's transformer configs).

    Returns:
        ``(name, [])`` for an exact match, else ``(closest name or None, differences of the closest)``,
        where closeness counts matching fields.
    """
    best, best_score, best_diff = None, -1, []
    for name, cfg in named.items():
        diff = [f"{f} {getattr(cfg, f)} vs file {found[f]}" for f in _COMPARED
                if f in found and getattr(cfg, f) != found[f]]
        score = sum(1 for f in _COMPARED if f in found) - len(diff)
        if not diff:
            return name, []
        if score > best_score:
            best, best_score, best_diff = name, score, diff
    return best, best_diff


def describe_mismatch(model_name: str, cfg, found: Mapping, named: Mapping[str, object]) -> str:
    """One sentence for a configuration that does not fit a file: what the file looks like and which named
    configuration (if any) fits it."""
    if not found:
        return "the file does not look like an Infinity transformer (no word_embed/head/block tensors)"
    bits = ", ".join(f"{_LABEL.get(k, k)} {v}" for k, v in found.items() if v is not None)
    diff = [f"{_LABEL[f]} {getattr(cfg, f)} in {model_name} vs {found[f]} in the file" for f in _COMPARED
            if f in found and getattr(cfg, f) != found[f]]
    name, _ = closest_config(found, {k: v for k, v in named.items() if k != model_name})
    exact = name is not None and not closest_config(found, {name: named[name]})[1]
    hint = (f"it looks like {name}: use --model {name}" if exact else
            "no named configuration fits it: build a model folder (model.json) with these values")
    return f"the file looks like {bits} ({'; '.join(diff) or 'same sizes, other keys differ'}); {hint}"
