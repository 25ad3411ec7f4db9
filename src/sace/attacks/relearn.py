"""Relearning attack (white box on the weights): a few steps of benign LoRA fine-tuning of the erased model.

Unlearning in LLMs and erasure in diffusion models are known to be shallow: fine-tuning on data that never
shows the concept can bring it back ("relearning", e.g. Lynch et al. 2024; Suriyakumar et al., "Unstable
Unlearning", 2024, for erased diffusion models). Here the erased model (its adapters on) gets a new LoRA
adapter on every scale, trained with the one trainer (:mod:`sace.erasure.trainer`) for ``steps`` steps on the
next-scale likelihood of pyramids the **original** model draws for the concept's *retain* prompts (other
classes, never the concept):

    min_LoRA  - mean_i  log p_{erased + LoRA}(pyramid_i | r_i) / (number of token elements),

unguided (the model's own training objective). Then the typed concept prompts are judged. Zero steps leave the
LoRA at exactly zero (B = 0): the erased model's own images, bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adapters import AdapterConfig, adapter_set, detach_adapters
from ..erasure.trainer import Objective, OptimSettings, Trainer
from ..errors import SaceError
from ..sampling import make_generators, sample
from .base import AttackResult, AttackSetup, AttackTarget, CurvePoint, Stopwatch, encode, finish, judge_attempts
from .soft_prompt import sequence_log_likelihood


@dataclass
class RelearnConfig:
    """Relearning settings (the budget is ``steps`` LoRA fine-tuning steps)."""

    steps: int = 20
    lr: float = 1e-3
    rank: int = 4
    batch_size: int = 8
    pyramids: int = 32          # benign pyramids (cycled over the retain prompts), drawn by the original model
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.steps <= 10_000:
            raise SaceError(f"relearning: steps must be in 0..10000, got {self.steps}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise SaceError(f"relearning: lr must be a finite number > 0, got {self.lr}")
        if not 1 <= self.rank <= 64:
            raise SaceError(f"relearning: LoRA rank must be in 1..64, got {self.rank}")
        if not 1 <= self.batch_size <= 256 or not 1 <= self.pyramids <= 4096:
            raise SaceError("relearning: batch_size must be in 1..256 and pyramids in 1..4096")


class RelearnObjective(Objective):
    """Benign fine-tuning: next-scale NLL of the original model's pyramids of benign prompts (module docstring)."""

    key, title = "relearn", "relearning"

    def __init__(self, benign: list[str], cfg: RelearnConfig, name: str = "relearn", modules: list[str] | None = None):
        if not benign:
            raise SaceError("relearning needs benign prompts (the concept's retain prompts); the concept has none")
        # ``config``, not ``cfg``: the trainer's CLI-range check of ``cfg`` would refuse 0 steps (a valid budget here)
        self.benign, self.config, self.name, self.modules = benign, cfg, name, modules

    def adapter_config(self, name):
        cfg = AdapterConfig(name=name or self.name, rank=self.config.rank, alpha=float(self.config.rank), gate="shared")
        if self.modules:
            cfg.modules = list(self.modules)
        return cfg, self.config.seed

    def optim(self) -> OptimSettings:
        c = self.config
        return OptimSettings(c.steps, c.lr, (0.9, 0.97), 0.0, 5.0, c.seed, max(1, c.steps))

    @torch.no_grad()
    def prepare(self, trainer: Trainer) -> None:
        m, c = trainer.model, self.config
        prompts = [self.benign[i % len(self.benign)] for i in range(c.pyramids)]
        self.cond = m.encode_prompts(prompts)
        seeds = [c.seed * 7919 + 31 * i + 5 for i in range(c.pyramids)]
        with adapter_set(m).disabled():     # the original model draws the benign data
            res = sample(m, self.cond, generator=make_generators(seeds, device=m.device), decode=False,
                         keep_logits=False)
        self.pyr = res.pyramid
        self.tf = m.tf_inputs(self.pyr, mode="sampling")

    def step(self, trainer: Trainer):
        m, c = trainer.model, self.config
        idx = torch.randperm(self.cond.batch_size, generator=trainer.gen)[: c.batch_size]
        z = m.forward_teacher_forced(self.cond.index(idx), self.tf[idx.to(self.tf.device)])
        nll = -sequence_log_likelihood(z, self.pyr.index(idx)).mean()
        yield nll, {"nll": nll}

    def tokens_per_step(self, trainer: Trainer) -> int:
        return min(self.config.batch_size, self.cond.batch_size) * trainer.model.schedule.num_tokens

    def metadata(self, trainer: Trainer) -> dict:
        return {"benign_prompts": len(self.benign), "train_config": asdict(self.config)}


def relearn_attack(model, target: AttackTarget, setup: AttackSetup, benign: list[str],
                   cfg: RelearnConfig | None = None) -> AttackResult:
    """Fine-tune ``target`` (its adapters on) with a new LoRA on ``benign`` prompts' original-model pyramids
    for ``cfg.steps`` steps, then judge the start prompts (typed concept prompts) on the evaluation seeds.

    The new adapter is detached afterwards (the model is left as it was). The curve has two points: 0 steps
    (the erased model as it is) and ``cfg.steps``.
    Raises:
        SaceError: a bad config, no benign prompts, a non-finite loss.
    """
    cfg = cfg or RelearnConfig()
    cfg.validate()
    name = "atk_relearn"
    if name in adapter_set(model).names():
        detach_adapters(model, name)
    # the family's default adapter groups (Infinity: the adapter default, cross-attention + FFN; VAR: its table's)
    modules = getattr(model, "method_defaults", {}).get("sace", {}).get("modules")
    obj = RelearnObjective(list(benign), cfg, name, modules)
    unattacked = judge_attempts(model, target, setup, lambda ks: encode(model, ks), setup.prompts)
    clock = Stopwatch()
    try:
        with clock, target.active(model):
            tr = Trainer(model, obj, adapter_name=name)
            trained = tr.train(progress=False)
        relearned = AttackTarget(target.name, [*target.adapters, name], target.negative_prompt, target.cost)
        final = judge_attempts(model, relearned, setup, lambda ks: encode(model, ks), setup.prompts,
                               [f"{p} (after {cfg.steps} benign LoRA steps)" for p in setup.prompts])
    finally:
        if name in adapter_set(model).names():
            detach_adapters(model, name)
    log = trained.log
    return finish("relearning", target, {"unit": "LoRA steps", "per_prompt": cfg.steps}, final, unattacked,
                  {"queries": 0, "gradient_steps": cfg.steps, "seconds": round(clock.seconds, 2)},
                  [CurvePoint(0, unattacked.asr), CurvePoint(cfg.steps, final.asr)],
                  [{"start": p, "soft": f"{cfg.steps} LoRA steps on {len(benign)} benign prompts"}
                   for p in setup.prompts],
                  config=asdict(cfg), final_nll=(log[-1]["nll"] if log else None))
