"""What the training recipes share (``fashion``: Infinity, :mod:`sace.recipes.fashion`; ``fashion-var``: VAR,
:mod:`sace.recipes.fashion_var`): the hyper-parameters both have (:class:`RecipeBase`), the learning-rate
schedule, the skeletons of the VAE and transformer stages (seeding, optimiser, the resumable
:class:`~sace.recipes.loop.TrainLoop`, the final weights) and the start and timing of a build. A recipe
supplies its models, its data and its per-step loss.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..io import write_json
from .loop import TrainLoop, load_state, save_state

#: a recipe's step: step index -> (loss, progress-bar postfix)
StepFn = Callable[[int], tuple[Tensor, dict]]


@dataclass
class RecipeBase:
    """The hyper-parameters every recipe has (``recipe.json`` and the model card record them); defaults are the
    ``fashion`` recipe's, a recipe adds its own fields and overrides the defaults that differ."""

    seed: int = 0                   # every stage's seeds derive from it (VAE: seed, seed + 1; transformer: + 2, + 3)
    image_size: int = 32            # side of the training images (Fashion-MNIST's 28 px padded to it)
    # VAE
    vae_ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    vae_res_blocks: int = 1         # residual blocks per VAE resolution level
    vae_steps: int = 600            # optimiser steps of the VAE stage
    vae_batch: int = 64             # images per VAE step
    vae_lr: float = 2e-3            # peak VAE learning rate (100 warm-up steps, cosine to 5%)
    # transformer
    depth: int = 4                  # transformer blocks
    width: int = 144                # embedding width C
    heads: int = 4                  # attention heads
    steps: int = 2800               # optimiser steps of the transformer stage
    batch: int = 64                 # images per transformer step
    lr: float = 1e-3                # peak transformer learning rate
    min_lr: float = 5e-5            # cosine floor
    warmup: int = 150               # linear warm-up steps
    weight_decay: float = 0.02      # AdamW decay of the matrices (not of norms, biases, embeddings)
    grad_clip: float = 2.0          # gradient-norm clip
    cond_drop: float = 0.1          # condition dropout to the null condition (classifier-free guidance)
    ema: float = 0.998              # EMA decay of the shipped weights
    checkpoint_every: int = 250     # steps between resumable checkpoints
    # sampling defaults shipped with the model
    guidance: float = 3.0
    top_k: int = 0
    top_p: float = 0.0
    threads: int = 2                # torch intra-op threads while training


def warmup_cosine_lr(step: int, total: int, base: float, warmup: int, min_lr: float) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def train_vae_stage(r: RecipeBase, out: Path, name: str, build: Callable[[], nn.Module],
                    load_images: Callable[[], Tensor],
                    make_step: Callable[[nn.Module, Tensor, torch.Generator], StepFn],
                    progress: bool = True) -> nn.Module:
    """The VAE stage: ``out/vae.pt`` when it exists (loaded, nothing trained), else trained and written there.

    Training: the global RNG seeded with ``r.seed`` before ``build()`` (the initialisation is part of the
    recipe's seed), AdamW (betas 0.9/0.95, no weight decay), 100 warm-up steps then cosine decay from ``r.vae_lr``
    to 5% of it over ``r.vae_steps``, gradient clip 1, the data generator seeded ``r.seed + 1``, resumable
    checkpoints ``out/vae_ckpt.pt``.

    Args:
        name: the stage's name (progress bar, errors). build: a fresh VAE.
        load_images: the training images ``(N, ...)`` uint8. make_step: ``(vae, images, gen) -> step_fn``.
    Returns:
        the VAE in eval mode.
    Raises:
        SaceError: a non-finite loss (:meth:`TrainLoop.run`).
    """
    final = out / "vae.pt"
    vae = build()
    if final.exists():
        vae.load_state_dict(load_state(final)["model"])
        return vae.eval()
    torch.manual_seed(r.seed)
    vae = build()
    imgs = load_images()
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(r.seed + 1)
    loop = TrainLoop(name, r.vae_steps, out / "vae_ckpt.pt", vae, opt, gen,
                     lambda s: warmup_cosine_lr(s, r.vae_steps, r.vae_lr, 100, r.vae_lr * 0.05), 1.0,
                     r.checkpoint_every)
    loop.run(make_step(vae, imgs, gen), progress)
    save_state(final, {"model": vae.state_dict()})
    return vae.eval()


def train_transformer_stage(r: RecipeBase, out: Path, build: Callable[[], nn.Module], no_decay: tuple[str, ...],
                            betas: tuple[float, float], make_step: Callable[[nn.Module, TrainLoop], StepFn],
                            progress: bool = True) -> tuple[nn.Module, dict]:
    """The transformer stage: the EMA weights of ``out/transformer.pt`` when it exists, else trained (and
    written there with the training log).

    Training: the global RNG seeded with ``r.seed + 2`` before ``build()``, an EMA copy (decay ``r.ema``),
    AdamW with ``betas`` and weight decay ``r.weight_decay`` on every matrix whose name does not end with one of
    ``no_decay`` (vectors never decay), :func:`warmup_cosine_lr` (``r.lr``, ``r.warmup``, ``r.min_lr``), gradient
    clip ``r.grad_clip``, the data generator ``loop.gen`` seeded ``r.seed + 3``, resumable checkpoints
    ``out/transformer_ckpt.pt`` with the log ``{"loss": [...], "scale_loss": [...]}`` that the step appends to.

    Args:
        build: a fresh transformer. make_step: ``(transformer, loop) -> step_fn`` (prepares the recipe's data).
    Returns:
        ``(EMA transformer in eval mode, log)``; the log adds ``seconds_this_run``.
    Raises:
        SaceError: a non-finite loss (:meth:`TrainLoop.run`).
    """
    final = out / "transformer.pt"
    if final.exists():
        st = load_state(final)
        tr = build()
        tr.load_state_dict(st["ema"])
        return tr.eval(), st.get("log", {})
    torch.manual_seed(r.seed + 2)
    tr = build()
    ema = copy.deepcopy(tr).requires_grad_(False)
    decay, keep = [], []
    for n, p in tr.named_parameters():
        (keep if p.ndim < 2 or n.endswith(no_decay) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                             {"params": keep, "weight_decay": 0.0}], lr=r.lr, betas=betas)
    gen = torch.Generator().manual_seed(r.seed + 3)
    loop = TrainLoop("transformer", r.steps, out / "transformer_ckpt.pt", tr, opt, gen,
                     lambda s: warmup_cosine_lr(s, r.steps, r.lr, r.warmup, r.min_lr), r.grad_clip, r.checkpoint_every,
                     ema=ema, ema_decay=r.ema, log={"loss": [], "scale_loss": []}, keep_log=True)
    step_fn = make_step(tr, loop)
    t0 = time.time()
    loop.run(step_fn, progress)
    log = loop.log
    log["seconds_this_run"] = time.time() - t0
    save_state(final, {"ema": ema.state_dict(), "log": log})
    return ema.eval(), log


def start_build(r: RecipeBase, out_dir: str | os.PathLike) -> Path:
    """Create the work folder, set ``r.threads`` torch threads and write ``recipe.json``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(r.threads)
    write_json(out / "recipe.json", asdict(r))
    return out


@contextlib.contextmanager
def timed(times: dict, key: str):
    """Store the wall time in seconds of the ``with`` body as ``times[key]`` (not when the body raises)."""
    t = time.time()
    yield
    times[key] = time.time() - t
