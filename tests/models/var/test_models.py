"""The VAR family outside the parity numbers: registry entries and parameter counts, strict checkpoint
loading (official key names, .pth and safetensors, local path or hub), class vocabularies, phi tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sace.errors import CheckpointError, SaceError
from sace.models import registry
from sace.models.var.classes import ClassVocabulary, imagenet_vocabulary
from sace.models.var.quantizer import phi_index_table

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "var_tiny"


def test_registry_parameter_counts_match_the_published_models():
    """VAR paper / README: d16 310M, d20 600M, d24 1.0B, d30 2.0B; our exact counts (meta device) round to
    them (shared/docs/reference-models.md: 310 / 601 / 1033 / 2010 M); the VQVAE has 108.9M."""
    specs = registry.builtin_specs()
    exact = {16: 310_283_520, 20: 600_917_136, 24: 1_033_399_360, 30: 2_010_020_356}
    published_m = {16: 310, 20: 600, 24: 1000, 30: 2000}
    for d, n in exact.items():
        p = specs[f"var-d{d}"].num_params()
        assert p["transformer"] == n
        assert abs(p["transformer"] / 1e6 - published_m[d]) / published_m[d] < 0.04
        assert p["vae"] == 108_948_355
        assert specs[f"var-d{d}"].schedule.num_tokens == 680
        assert specs[f"var-d{d}"].schedule.image_size == (256, 256)
    listed = {d["name"]: d for d in registry.describe_models()}
    assert listed["var-d16"]["params"]["transformer"] == exact[16]
    assert listed["var-tiny-fixture"]["exists"]


def _tiny_spec(**kw):
    return dataclasses.replace(registry.builtin_specs()["var-tiny-fixture"], **kw)


def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path, monkeypatch):
    sd = load_file(str(FIX / "var_tiny_state_dict.safetensors"))
    sd["blocks.0.attn.extra_bias"] = sd.pop("blocks.0.attn.q_bias")
    bad = tmp_path / "var_bad.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.0\.attn\.q_bias.*unexpected keys: "
                                              r"blocks\.0\.attn\.extra_bias"):
        registry.load_model("var-tiny-fixture", transformer_path=str(bad))
    # a config that does not fit the file: shape mismatches are listed, never silently loaded
    spec = _tiny_spec(name="x", vae=dataclasses.replace(_tiny_spec().vae, vocab_size=512))
    monkeypatch.setattr(registry, "builtin_specs", lambda: {"x": spec})
    with pytest.raises(CheckpointError, match=r"quantize\.embedding\.weight: checkpoint \(1024, 32\)"):
        registry.load_model("x")


def test_pth_with_weights_only_and_hub_resolution(tmp_path, monkeypatch):
    """The official .pth form loads through torch.load(weights_only=True); a bare file name resolves in the
    hub repo FoundationVision/var (hf_hub_download, replaced here by a local lookup: tests stay offline)."""
    torch.save(load_file(str(FIX / "var_tiny_state_dict.safetensors")), tmp_path / "var_tiny.pth")
    calls = []

    def fake_download(repo_id, filename, **_):
        calls.append((repo_id, filename))
        return str(tmp_path / filename if filename.endswith(".pth") else FIX / "vae_tiny_state_dict.safetensors")

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = _tiny_spec(name="x", transformer_file="var_tiny.pth", vae_file="vae.safetensors",
                      hub_repo="FoundationVision/var")
    monkeypatch.setattr(registry, "builtin_specs", lambda: {"x": spec})
    m = registry.load_model("x")
    assert calls == [("FoundationVision/var", "var_tiny.pth"), ("FoundationVision/var", "vae.safetensors")]
    ref = load_file(str(FIX / "var_tiny_state_dict.safetensors"))
    assert torch.equal(m.transformer.head.weight, ref["head.weight"])


def test_saved_folder_round_trip(tmp_path):
    from sace.models.var.checkpoint import save_var_model

    m = registry.load_model("var-tiny-fixture")
    save_var_model(m, tmp_path / "m", description="copy")
    m2 = registry.load_model(str(tmp_path / "m"))
    assert m2.family == "var" and m2.classes.label("golden retriever") == 207
    assert all(torch.equal(a, b) for a, b in zip(m.transformer.state_dict().values(),
                                                 m2.transformer.state_dict().values()))


def test_class_vocabularies():
    inet = imagenet_vocabulary()
    assert len(inet) == 1000
    assert inet.label("golden retriever") == inet.label("Golden_Retriever") == inet.label("207") == 207
    assert inet.label("tench") == 0 and inet.label("Tinca tinca") == 0   # a WordNet synonym
    with pytest.raises(SaceError, match="did you mean"):
        inet.label("golden retreiver")
    with pytest.raises(SaceError, match="out of range"):
        inet.label("1000")
    fash = ClassVocabulary([["tshirt", "T-shirt/top"], ["sneaker", "running shoe", "shoe"], ["sandal"]])
    assert fash.label("T-shirt/top") == 0 and fash.label("Sneaker") == 1 and fash.display(3) == "null"
    assert fash.label("a photo of a sneaker") == 1 and fash.label("a running shoe, side view") == 1
    assert inet.label("a photo of a golden retriever") == 207
    with pytest.raises(SaceError, match="several classes"):
        fash.label("a sandal next to a sneaker")
    # within one noun phrase the head noun (the last name) decides: "top" modifies the sneaker here
    tops = ClassVocabulary([["tshirt", "top"], ["sneaker"]])
    assert tops.label("a high top basketball sneaker") == 1 and tops.label("a top") == 0
    with pytest.raises(SaceError, match=r"several classes \(tshirt, sneaker\)"):
        tops.label("a top and a sneaker")
    # a separator inside a class name is part of the name, not a phrase boundary
    assert inet.label("a photo of a black and gold garden spider") == 72
    assert inet.label("a photo of a slip-on shoe") == 630


def test_conditions_and_null_class():
    m = registry.load_model("var-tiny-fixture")
    c = m.encode_prompts(["volcano", "3"])
    assert m.labels(c).tolist() == [980, 3] and c.is_null == (False, False)
    u = m.null_condition(c)
    assert m.labels(u).tolist() == [1000, 1000] and u.is_null == (True, True)
    with pytest.raises(SaceError, match="not a class"):
        m.encode_prompts(["a purple unicorn"])


def test_class_embedding_condition_gives_bit_identical_images_and_logits():
    """A continuous condition (the class's row of class_emb, the null row for CFG) equals the class index."""
    from sace.generate import generate
    m = registry.load_model("var-tiny-fixture")
    c = m.encode_prompts(["volcano", "3"])
    e = m.continuous_condition(c)
    assert e.tokens.shape == (2, 1, m.transformer.cfg.embed_dim) and e.tokens.is_floating_point()
    assert torch.equal(e.tokens[:, 0], m.transformer.class_emb.weight[[980, 3]])
    assert m.continuous_condition(e) is e
    # the null row of CFG: a continuous null condition gives the null class's embedding
    u = m.continuous_condition(m.null_condition(c))
    assert torch.equal(u.tokens[:, 0], m.transformer.class_emb.weight[[1000, 1000]])
    a = generate(m, ["volcano", "3"], [0, 1])
    b = generate(m, ["volcano", "3"], [0, 1], conditions_fn=lambda ks: m.continuous_condition(m.encode_prompts(ks)))
    assert torch.equal(a, b)
    # teacher-forced logits, guided, with a continuous condition and the label null side mixed
    pyr, tf = m.tokenize(a * 2 - 1)
    za = m.forward_teacher_forced(c, tf, guidance=3.0)
    zb = m.forward_teacher_forced(e, tf, guidance=3.0)
    assert all(torch.equal(x, y) for x, y in zip(za.per_scale, zb.per_scale))
    # a different embedding changes the images, and bad widths / non-finite rows are one-line errors
    moved = generate(m, ["volcano", "3"], [0, 1], conditions_fn=lambda ks: m.continuous_condition(
        m.encode_prompts(["7", "8"])))
    assert not torch.equal(a, moved)
    with pytest.raises(SaceError, match="class embeddings must be"):
        m.transformer.prepare(torch.zeros(2, 3))
    with pytest.raises(SaceError, match="non-finite"):
        m.transformer.prepare(torch.full((1, m.transformer.cfg.embed_dim), float("nan")))


def test_phi_index_tables_follow_the_reference_float64_ties():
    assert phi_index_table(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_index_table(7, 4) == [0, 0, 1, 2, 2, 3, 3]
    assert phi_index_table(5, 4) == [0, 1, 2, 2, 3]
    assert phi_index_table(7, 1) == [0] * 7
    assert phi_index_table(4, 0) == [0, 1, 2, 3]


def test_vq_training_pass_matches_inference_and_reaches_every_part():
    """forward_train: forward value = the inference fhat, indices = quantize(); gradients reach the encoder
    (straight-through and commitment), the codebook and the phi convolutions (VQ loss)."""
    from sace.models.var.vqvae import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    vae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=16, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1,
                            patch_nums=[1, 2, 4, 8]))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    f = vae.features(x)
    f_hat, loss, idx = vae.quantize.forward_train(f)
    with torch.no_grad():
        ref_idx = vae.quantize.quantize(f)
        ref_fhat = vae.quantize.quantize(f, to_fhat=True)[-1]
    assert all(torch.equal(a, b) for a, b in zip(idx, ref_idx))
    torch.testing.assert_close(f_hat, ref_fhat, rtol=0, atol=1e-5)
    (vae.decoder(vae.post_quant_conv(f_hat)).square().mean() + loss).backward()
    for name in ("encoder.conv_in.weight", "quantize.embedding.weight", "quantize.quant_resi.qresi_ls.0.weight",
                 "decoder.conv_out.weight"):
        assert vae.get_parameter(name).grad.abs().sum() > 0, name
    assert float(vae.quantize.ema_vocab_hit_SV.sum()) > 0


def test_published_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SaceError, match=r"cannot fetch FoundationVision/var/var_d16\.pth"):
        registry.load_model("var-d16")
