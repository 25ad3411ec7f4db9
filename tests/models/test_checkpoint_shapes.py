"""A named configuration that does not fit a checkpoint names the configuration the file has."""

from __future__ import annotations

import re

import pytest
import torch

from sace.errors import CheckpointError
from sace.io import save_safetensors
from sace.models.infinity.shapes import closest_config, file_shapes, infer_transformer_config
from sace.models.infinity.transformer import InfinityConfig, InfinityTransformer
from sace.models.registry import builtin_specs, load_model


def _official_state_dict(cfg: InfinityConfig) -> dict[str, torch.Tensor]:
    """Zeros with the shapes and official key names (``block_chunks.{c}.module.{j}.``) of ``cfg``."""
    with torch.device("meta"):
        t = InfinityTransformer(cfg)
    per = cfg.depth // cfg.block_chunks
    out = {}
    for k, v in t.state_dict().items():
        m = re.match(r"blocks\.(\d+)\.(.*)", k)
        if m:
            i = int(m.group(1))
            k = f"block_chunks.{i // per}.module.{i % per}.{m.group(2)}"
        out[k] = torch.zeros(v.shape, dtype=torch.bfloat16)
    return out


def test_shapes_give_back_the_configuration(tmp_path):
    cfg = InfinityConfig(depth=6, embed_dim=96, num_heads=3, text_channels=48, codebook_dim=24, block_chunks=3)
    torch.save(_official_state_dict(cfg), tmp_path / "t.pth")
    found = infer_transformer_config(file_shapes(tmp_path / "t.pth"))
    assert found == {"depth": 6, "block_chunks": 3, "embed_dim": 96, "codebook_dim": 24, "num_heads": 3,
                     "mlp_hidden": cfg.mlp_hidden, "text_maxlen": 512, "text_channels": 48}
    assert closest_config(found, {"a": cfg})[0] == "a"
    name, diff = closest_config(found, {"b": InfinityConfig(depth=6, embed_dim=96, num_heads=3, text_channels=48,
                                                            codebook_dim=32)})
    assert name == "b" and diff == ["codebook_dim 32 vs file 24"]


def test_the_125m_registry_entry_is_layer12_at_256px():
    spec = builtin_specs()["infinity-125m"]
    assert (spec.transformer.depth, spec.transformer.embed_dim, spec.transformer.num_heads) == (12, 768, 8)
    assert spec.transformer_file == "infinity_125M_256x256.pth" and spec.schedule.image_size == (256, 256)
    assert 1.0e8 < spec.num_params()["transformer"] < 2.0e8


def test_wrong_named_config_names_the_config_the_file_looks_like(tmp_path):
    # a file with the shapes of the tiny fixture's transformer but the width of 125M's heads: no named model
    tiny = builtin_specs()["infinity-tiny-fixture"].transformer
    save_safetensors(tmp_path / "tiny.safetensors", _official_state_dict(tiny))
    with pytest.raises(CheckpointError, match=r"depth 2, block chunks 2, width 64, bits per token 16.*"
                                              r"use --model infinity-tiny-fixture"):
        load_model("infinity-125m", transformer_path=str(tmp_path / "tiny.safetensors"),
                   vae_path=builtin_specs()["infinity-tiny-fixture"].vae_file, load_text_encoder=False)
    other = InfinityConfig(depth=4, embed_dim=64, num_heads=2, text_channels=256, codebook_dim=16, block_chunks=2)
    save_safetensors(tmp_path / "other.safetensors", _official_state_dict(other))
    with pytest.raises(CheckpointError, match=r"depth 2 in infinity-tiny-fixture vs 4 in the file.*no named"):
        load_model("infinity-tiny-fixture", transformer_path=str(tmp_path / "other.safetensors"))
