"""Training recipe of ``fashion-var``: a class-conditional VAR (FoundationVision/VAR architecture, VQ index
tokens, AdaLN class conditioning) trained on Fashion-MNIST on a CPU, the second embedded family.

Stages (resumable, seeded, with progress bars; the stage skeletons, seeds, optimisers and learning-rate
schedule are :mod:`sace.recipes.common`'s, the loop is :class:`sace.recipes.loop.TrainLoop`):

1. the VQVAE (32x32 images, stride 4, an 8x8 latent; one codebook over the scales ``1,2,3,4,6,8``): L1 + MSE
   reconstruction through the straight-through multi-scale residual quantiser plus its VQ loss
   (:meth:`~sace.models.var.quantizer.MultiScaleVQ.forward_train`), codebook initialised from encoder features
   and dead codes restarted from them;
2. the transformer: teacher-forced next-scale prediction of the index pyramids of the train split,
   cross-entropy per token (the reference's ``1/L`` weighting), label dropout to the null class for
   classifier-free guidance, AdamW with warm-up and cosine decay, an EMA of the weights;
3. the model folder (``model.json`` with ``"family": "var"`` and ``"domain": "fashion"``, safetensors).

    sace train fashion-var --out runs/fashion-var
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import write_json
from ..models.var.checkpoint import save_var_model
from ..models.var.classes import ClassVocabulary
from ..models.var.model import VARModel
from ..models.var.transformer import VARConfig, VARTransformer, drop_labels
from ..models.var.vqvae import VQVAE, VQVAEConfig
from . import fashion_data as fd
from .common import RecipeBase, start_build, timed, train_transformer_stage, train_vae_stage


@dataclass
class FashionVARRecipe(RecipeBase):
    """Every hyper-parameter of the recipe (written into ``model.json``): the shared ones of
    :class:`~sace.recipes.common.RecipeBase` (``guidance`` here: the last scale's w, ramped from 1 at scale 0),
    the defaults that differ from ``fashion``'s, and these."""

    train_subset: int = 0             # 0: the whole train split (a smoke run uses a few hundred images)
    patch_nums: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8])
    # VQVAE
    vocab_size: int = 512
    z_channels: int = 16
    vae_ch: int = 32
    vae_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2])
    vae_steps: int = 800
    restart_every: int = 100          # dead-code restarts (codes unused over the last steps)
    # transformer
    width: int = 128
    steps: int = 3000

    def vae_config(self) -> VQVAEConfig:
        return VQVAEConfig(vocab_size=self.vocab_size, z_channels=self.z_channels, ch=self.vae_ch,
                           ch_mult=list(self.vae_ch_mult), num_res_blocks=self.vae_res_blocks,
                           patch_nums=list(self.patch_nums))

    def transformer_config(self) -> VARConfig:
        return VARConfig(depth=self.depth, embed_dim=self.width, num_heads=self.heads, num_classes=fd.NUM_CLASSES,
                         vocab_size=self.vocab_size, z_channels=self.z_channels, patch_nums=list(self.patch_nums),
                         cond_drop_rate=self.cond_drop)


def class_vocabulary() -> ClassVocabulary:
    """The ten classes: key first, then the official name and every concept word (captions resolve too)."""
    return ClassVocabulary([[fd.CLASS_KEYS[i], fd.CLASS_NAMES[i], *fd.concept_words(i)]
                            for i in range(fd.NUM_CLASSES)], source="")


def _train_images(r: FashionVARRecipe) -> tuple[Tensor, Tensor]:
    imgs, labels = fd.load_split("train")
    if r.train_subset:
        keep = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(r.seed))[: r.train_subset]
        imgs, labels = imgs[keep], labels[keep]
    return imgs, labels


@torch.no_grad()
def _restart_dead_codes(vae: VQVAE, feats: Tensor, gen: torch.Generator) -> int:
    """Codes no scale used lately get encoder feature vectors of the current batch; returns how many."""
    q = vae.quantize
    dead = (q.ema_vocab_hit_SV.sum(0) < 1e-3).nonzero().flatten()
    if len(dead):
        pool = feats.permute(0, 2, 3, 1).reshape(-1, q.channels)
        pick = torch.randint(len(pool), (len(dead),), generator=gen)
        q.embedding.weight[dead] = pool[pick] + 0.01 * torch.randn(len(dead), q.channels, generator=gen)
    return len(dead)


def train_vae(r: FashionVARRecipe, out: Path, progress: bool = True) -> VQVAE:
    """Stage 1: the VQVAE (see the module docstring; the stage's schedule, seeds and optimiser:
    :func:`~sace.recipes.common.train_vae_stage`)."""

    def make_step(vae: VQVAE, imgs: Tensor, gen: torch.Generator):
        def step_fn(step: int):
            x = fd.to_model_images(imgs[torch.randint(len(imgs), (r.vae_batch,), generator=gen)], r.image_size)
            feats = vae.features(x)
            if step == 0:
                vae.quantize.ema_vocab_hit_SV.zero_()          # every code starts "dead": initialised from features
            if step % r.restart_every == 0:
                _restart_dead_codes(vae, feats.detach(), gen)
            f_hat, vq_loss, _ = vae.quantize.forward_train(feats)
            rec = vae.decoder(vae.post_quant_conv(f_hat))
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + vq_loss
            return loss, {"loss": f"{loss.item():.4f}", "vq": f"{vq_loss.item():.4f}"}

        return step_fn

    return train_vae_stage(r, out, "VQVAE", lambda: VQVAE(r.vae_config()), lambda: _train_images(r)[0],
                           make_step, progress)


@torch.no_grad()
def tokenize_dataset(vae: VQVAE, images_u8: Tensor, r: FashionVARRecipe, batch: int = 500) -> list[Tensor]:
    """Index pyramids of uint8 images: K tensors ``(N, pn_k**2)`` int16."""
    parts = [vae.images_to_indices(fd.to_model_images(images_u8[i:i + batch], r.image_size))
             for i in range(0, len(images_u8), batch)]
    return [torch.cat([p[k] for p in parts]).to(torch.int16) for k in range(len(r.patch_nums))]


def train_transformer(r: FashionVARRecipe, out: Path, vae: VQVAE, progress: bool = True
                      ) -> tuple[VARTransformer, dict]:
    """Stage 2: teacher-forced training with label dropout and an EMA; returns the EMA weights (the stage's
    schedule, seeds and optimiser: :func:`~sace.recipes.common.train_transformer_stage`)."""

    def make_step(tr: VARTransformer, loop):
        imgs, labels = _train_images(r)
        idx_all = tokenize_dataset(vae, imgs, r)
        k_all, offs, gen = len(r.patch_nums), tr.cfg.offsets, loop.gen

        def step_fn(step: int):
            pick = torch.randint(len(labels), (r.batch,), generator=gen)
            idx = [i[pick].long() for i in idx_all]
            with torch.no_grad():
                x = vae.quantize.next_inputs(idx)
            lab = drop_labels(labels[pick].long(), r.cond_drop, tr.cfg.null_class, gen)
            logits = tr.forward_teacher_forced([tr.prepare(lab)] * k_all, x, k_all)          # (B, L, V)
            ce = F.cross_entropy(logits.transpose(1, 2), torch.cat(idx, 1), reduction="none")  # (B, L)
            loss = ce.mean()
            loop.log["loss"].append(round(loss.item(), 5))
            if (step + 1) % 50 == 0:
                loop.log["scale_loss"].append([step + 1] + [round(ce[:, offs[k]:offs[k + 1]].mean().item(), 4)
                                                            for k in range(k_all)])
            return loss, {"loss": f"{loss.item():.4f}"}

        return step_fn

    return train_transformer_stage(r, out, lambda: VARTransformer(r.transformer_config()),
                                   ("pos_start", "pos_1LC", "lvl_embed.weight", "class_emb.weight"), (0.9, 0.95),
                                   make_step, progress)


def build_fashion_var(out_dir: str | os.PathLike, recipe: FashionVARRecipe | None = None, *,
                      progress: bool = True, only: str | None = None) -> Path:
    """Run the recipe into ``out_dir`` (finished stages are skipped); returns the model folder
    ``out_dir/model`` (or ``out_dir`` with ``only="vae"``)."""
    r = recipe or FashionVARRecipe()
    out = start_build(r, out_dir)
    times = {}
    with timed(times, "vae_s"):
        vae = train_vae(r, out, progress)
    if only == "vae":
        return out
    with timed(times, "transformer_s"):
        tr, log = train_transformer(r, out, vae, progress)
    model = VARModel(tr, vae, class_vocabulary(), name="fashion-var",
                     defaults={"guidance": r.guidance, "temperature": 1.0, "top_k": r.top_k, "top_p": r.top_p})
    folder = save_var_model(model.eval(), out / "model", description="Class-conditional VAR (VQ index tokens, "
                            "AdaLN classes) trained on Fashion-MNIST (32x32); sace's second embedded family.",
                            extra={"domain": "fashion", "recipe": asdict(r), "train_times": times})
    write_json(out / "train_log.json", {"times": times, "log": log})
    return folder
