"""Training recipe of ``fashion-var``: a class-conditional VAR (FoundationVision/VAR architecture, VQ index
tokens, AdaLN class conditioning) trained on Fashion-MNIST on a CPU, the second embedded family.

Stages (resumable, seeded, with progress bars; the loop is :class:`sace.recipes.loop.TrainLoop`, the schedule
:func:`sace.recipes.fashion._lr`):

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

import copy
import os
import time
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
from .fashion import _lr
from .loop import TrainLoop, load_state, save_state


@dataclass
class FashionVARRecipe:
    """Every hyper-parameter of the recipe (written into ``model.json``)."""

    seed: int = 0
    image_size: int = 32
    train_subset: int = 0             # 0: the whole train split (a smoke run uses a few hundred images)
    patch_nums: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8])
    # VQVAE
    vocab_size: int = 512
    z_channels: int = 16
    vae_ch: int = 32
    vae_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2])
    vae_res_blocks: int = 1
    vae_steps: int = 800
    vae_batch: int = 64
    vae_lr: float = 2e-3
    restart_every: int = 100          # dead-code restarts (codes unused over the last steps)
    # transformer
    depth: int = 4
    width: int = 128
    heads: int = 4
    steps: int = 3000
    batch: int = 64
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 150
    weight_decay: float = 0.02
    grad_clip: float = 2.0
    cond_drop: float = 0.1
    ema: float = 0.998
    checkpoint_every: int = 250
    # sampling defaults shipped with the model (guidance: the last scale's w, ramped from 1 at scale 0)
    guidance: float = 3.0
    top_k: int = 0
    top_p: float = 0.0
    threads: int = 2

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
    """Stage 1: the VQVAE (see the module docstring)."""
    final = out / "vae.pt"
    vae = VQVAE(r.vae_config())
    if final.exists():
        vae.load_state_dict(load_state(final)["model"])
        return vae.eval()
    torch.manual_seed(r.seed)
    vae = VQVAE(r.vae_config())
    imgs, _ = _train_images(r)
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(r.seed + 1)
    loop = TrainLoop("VQVAE", r.vae_steps, out / "vae_ckpt.pt", vae, opt, gen,
                     lambda s: _lr(s, r.vae_steps, r.vae_lr, 100, r.vae_lr * 0.05), 1.0, r.checkpoint_every)

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

    loop.run(step_fn, progress)
    save_state(final, {"model": vae.state_dict()})
    return vae.eval()


@torch.no_grad()
def tokenize_dataset(vae: VQVAE, images_u8: Tensor, r: FashionVARRecipe, batch: int = 500) -> list[Tensor]:
    """Index pyramids of uint8 images: K tensors ``(N, pn_k**2)`` int16."""
    parts = [vae.images_to_indices(fd.to_model_images(images_u8[i:i + batch], r.image_size))
             for i in range(0, len(images_u8), batch)]
    return [torch.cat([p[k] for p in parts]).to(torch.int16) for k in range(len(r.patch_nums))]


def train_transformer(r: FashionVARRecipe, out: Path, vae: VQVAE, progress: bool = True
                      ) -> tuple[VARTransformer, dict]:
    """Stage 2: teacher-forced training with label dropout and an EMA; returns the EMA weights."""
    final = out / "transformer.pt"
    if final.exists():
        st = load_state(final)
        tr = VARTransformer(r.transformer_config())
        tr.load_state_dict(st["ema"])
        return tr.eval(), st.get("log", {})
    torch.manual_seed(r.seed + 2)
    tr = VARTransformer(r.transformer_config())
    ema = copy.deepcopy(tr).requires_grad_(False)
    imgs, labels = _train_images(r)
    idx_all = tokenize_dataset(vae, imgs, r)
    decay, no_decay = [], []
    for n, p in tr.named_parameters():
        (no_decay if p.ndim < 2 or n.endswith(("pos_start", "pos_1LC", "lvl_embed.weight", "class_emb.weight"))
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(r.seed + 3)
    loop = TrainLoop("transformer", r.steps, out / "transformer_ckpt.pt", tr, opt, gen,
                     lambda s: _lr(s, r.steps, r.lr, r.warmup, r.min_lr), r.grad_clip, r.checkpoint_every,
                     ema=ema, ema_decay=r.ema, log={"loss": [], "scale_loss": []}, keep_log=True)
    k_all, offs = len(r.patch_nums), tr.cfg.offsets

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

    t0 = time.time()
    loop.run(step_fn, progress)
    log = loop.log
    log["seconds_this_run"] = time.time() - t0
    save_state(final, {"ema": ema.state_dict(), "log": log})
    return ema.eval(), log


def build_fashion_var(out_dir: str | os.PathLike, recipe: FashionVARRecipe | None = None, *,
                      progress: bool = True, only: str | None = None) -> Path:
    """Run the recipe into ``out_dir`` (finished stages are skipped); returns the model folder
    ``out_dir/model`` (or ``out_dir`` with ``only="vae"``)."""
    r = recipe or FashionVARRecipe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(r.threads)
    write_json(out / "recipe.json", asdict(r))
    times = {}
    t = time.time()
    vae = train_vae(r, out, progress)
    times["vae_s"] = time.time() - t
    if only == "vae":
        return out
    t = time.time()
    tr, log = train_transformer(r, out, vae, progress)
    times["transformer_s"] = time.time() - t
    model = VARModel(tr, vae, class_vocabulary(), name="fashion-var",
                     defaults={"guidance": r.guidance, "temperature": 1.0, "top_k": r.top_k, "top_p": r.top_p})
    folder = save_var_model(model.eval(), out / "model", description="Class-conditional VAR (VQ index tokens, "
                            "AdaLN classes) trained on Fashion-MNIST (32x32); sace's second embedded family.",
                            extra={"domain": "fashion", "recipe": asdict(r), "train_times": times})
    write_json(out / "train_log.json", {"times": times, "log": log})
    return folder
