"""Baselines for an honest comparison (``shared/docs/METHOD.md`` §4).

* **S-VARE** (Zhong et al., ICLR 2026; facts from the public ``ndhg1213/S-VARE`` code as summarised in
  ``shared/docs/related-work.md`` §3.3): the frozen model samples the anchor prompt's pyramid (guided logits,
  tau 1); the student under the target prompt is teacher-forced on those tokens over **all** scales; per-bit
  cross-entropy to the anchor bits, kept only on tokens where at least 25% of the bits are wrong (bit wrong =
  CE > ln 2), normalised by the full sequence length; then, as a second optimiser step, KL(teacher || student)
  on the anchor prompt with weight 0.5. Trains cross-attention + FFN of every block (here: a dense,
  full-rank delta on those layers, i.e. full fine-tuning, at every scale).
* **ESD-style over all scales** (the naive port of diffusion erasure): at every scale the student under c*,
  on its own sampled history, is pulled towards ``z0(null) - eta * (z0(c*) - z0(null))`` of the frozen model.
* **Training-free**: a negative prompt (the concept's canonical prompt as the guidance's unconditional side;
  its row in :mod:`sace.erasure.catalogue`) and the scale-0 prompt swap (the anchor prompt conditions scale 0
  only).

Every baseline reports its wall time, tokens per step and peak memory like SACE does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..adapters import AdapterConfig, adapter_set
from ..concepts.grammar import replace_words
from ..concepts.spec import ConceptSpec
from ..models.base import Condition
from ..sampling import SamplingSettings, make_generators, sample
from . import losses as L
from .trainer import Objective, OptimSettings, Trainer, TrainResult
from .trainer import run as run_training

#: the result of a trained baseline (the one training result type, shared with SACE)
BaselineResult = TrainResult


def _teacher_defaults(model, guidance, temperature) -> tuple[float, float]:
    s = SamplingSettings(guidance=guidance, temperature=temperature).resolve(model)
    return float(s.guidance), float(s.temperature)


@dataclass
class SVAREConfig:
    """S-VARE hyper-parameters (code defaults of ndhg1213/S-VARE where they transfer: AdamW(0.9, 0.97),
    gradient clip 5, alpha = 25% wrong bits, KL weight 0.5, teacher tau 1; steps and lr scaled to the model)."""

    modules: list[str] = field(default_factory=lambda: ["cross_attn_q", "cross_attn_kv", "cross_attn_out", "ffn"])
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 8
    alpha: float = 0.25
    kl_weight: float = 0.5
    teacher_temperature: float = 1.0
    guidance: float | None = None
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 50


class SVAREObjective(Objective):
    """S-VARE: filtered CE of the student under c* to the frozen model's anchor tokens (all scales), then
    KL(teacher || student) on the anchor prompt as a second optimiser step (module docstring)."""

    key, title = "svare", "S-VARE"
    progress_keys = ("L_FCE", "L_pre")

    def __init__(self, concept: ConceptSpec, config: SVAREConfig | None = None, name: str = "svare"):
        self.concept, self.cfg, self.name = concept, config or SVAREConfig(), name

    def adapter_config(self, name):
        return AdapterConfig(name=name or self.name, modules=self.cfg.modules, gate="shared", kind="full"), None

    def optim(self) -> OptimSettings:
        c = self.cfg
        return OptimSettings(c.steps, c.lr, (0.9, 0.97), 0.0, c.grad_clip, c.seed, c.checkpoint_every)

    @torch.no_grad()
    def prepare(self, trainer: Trainer) -> None:
        m, cfg = trainer.model, self.cfg
        self.w, _ = _teacher_defaults(m, cfg.guidance, None)
        self.cond_t, self.cond_a = m.encode_prompts(self.concept.targets), m.encode_prompts(self.concept.anchors)
        # anchor pyramids of the frozen model and the guided logits (tau = 1) they were drawn from
        seeds = [cfg.seed * 7919 + i for i in range(self.cond_a.batch_size)]
        res = sample(m, self.cond_a, generator=make_generators(seeds), guidance=self.w,
                     temperature=cfg.teacher_temperature, decode=False, keep_logits=True)
        self.anchor, self.teacher = res.pyramid, res.logits
        self.tf = m.tf_inputs(self.anchor, mode="sampling")

    def step(self, trainer: Trainer):
        m, cfg, kind, n_tok = trainer.model, self.cfg, trainer.model.token_kind, trainer.model.schedule.num_tokens
        idx = torch.randperm(self.cond_t.batch_size, generator=trainer.gen)[: cfg.batch_size]
        z = m.forward_teacher_forced(self.cond_t.index(idx), self.tf[idx])
        labels = [self.anchor.flat(k)[idx] for k in range(self.anchor.num_scales)]
        loss_e = L.filtered_cross_entropy(kind, z.per_scale, labels, cfg.alpha, n_tok)
        yield loss_e, {"L_FCE": loss_e}
        z2 = m.forward_teacher_forced(self.cond_a.index(idx), self.tf[idx])
        loss_p = cfg.kl_weight * L.kl_summed(kind, [t[idx] for t in self.teacher.per_scale], z2.per_scale, n_tok)
        yield loss_p, {"L_pre": loss_p}

    def tokens_per_step(self, trainer: Trainer) -> int:
        return 2 * min(self.cfg.batch_size, self.cond_t.batch_size) * trainer.model.schedule.num_tokens

    def metadata(self, trainer: Trainer) -> dict:
        return {"concept": self.concept.name, "train_config": asdict(self.cfg)}


def train_svare(model, concept: ConceptSpec, config: SVAREConfig | None = None, progress: bool = True,
                name: str = "svare", out_dir=None, resume: bool = False) -> TrainResult:
    """Train the S-VARE baseline (an all-scale dense adapter; it stays attached to ``model``); ``out_dir``:
    checkpoints and the adapter folder; ``resume`` continues from the last checkpoint there."""
    return run_training(model, SVAREObjective(concept, config, name), out_dir=out_dir, resume=resume,
                        progress=progress)


@dataclass
class ESDConfig:
    """ESD-style all-scale erasure: negative guidance eta, trained like SACE's adapter but at every scale."""

    modules: list[str] = field(default_factory=lambda: ["cross_attn_q", "cross_attn_kv", "cross_attn_out", "ffn"])
    rank: int = 8
    alpha: float = 8.0
    eta: float = 1.0
    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 8
    guidance: float | None = None
    temperature: float | None = None
    grad_clip: float = 5.0
    seed: int = 0
    weight_decay: float = 0.01          # AdamW's default, which this baseline has always used
    checkpoint_every: int = 50


class ESDObjective(Objective):
    """ESD over all scales: the student under c*, on its own sampled history, pulled (KL) towards the frozen
    model's ``z(null) - eta * (z(c*) - z(null))`` at every scale."""

    key, title = "esd", "ESD (all scales)"

    def __init__(self, concept: ConceptSpec, config: ESDConfig | None = None, name: str = "esd"):
        self.concept, self.cfg, self.name = concept, config or ESDConfig(), name

    def adapter_config(self, name):
        c = self.cfg
        return AdapterConfig(name=name or self.name, modules=c.modules, rank=c.rank, alpha=c.alpha, gate="shared",
                             kind="lora"), c.seed

    def optim(self) -> OptimSettings:
        c = self.cfg
        return OptimSettings(c.steps, c.lr, (0.9, 0.97), c.weight_decay, c.grad_clip, c.seed, c.checkpoint_every)

    def prepare(self, trainer: Trainer) -> None:
        self.w, self.tau = _teacher_defaults(trainer.model, self.cfg.guidance, self.cfg.temperature)
        self.cond_t = trainer.model.encode_prompts(self.concept.targets)

    def step(self, trainer: Trainer):
        m, cfg = trainer.model, self.cfg
        idx = torch.randperm(self.cond_t.batch_size, generator=trainer.gen)[: cfg.batch_size]
        c = self.cond_t.index(idx)
        with torch.no_grad():
            seeds = [int(x) for x in torch.randint(0, 2**31 - 1, (len(idx),), generator=trainer.gen)]
            pyr = sample(m, c, generator=make_generators(seeds), guidance=self.w, temperature=self.tau,
                         decode=False, keep_logits=False).pyramid
            tf = m.tf_inputs(pyr, mode="sampling")
            with adapter_set(m).disabled():     # the frozen model
                _, zc, zu = m.forward_teacher_forced(c, tf, uncond=m.null_condition(c), return_parts=True)
            target = [L.esd_target(cc, u, cfg.eta) for cc, u in zip(zc.per_scale, zu.per_scale)]
        loss = L.kl_per_scale(m.token_kind, target, m.forward_teacher_forced(c, tf).per_scale)
        yield loss, {"loss": loss}

    def tokens_per_step(self, trainer: Trainer) -> int:
        return min(self.cfg.batch_size, self.cond_t.batch_size) * (trainer.model.schedule.num_tokens * 3)

    def metadata(self, trainer: Trainer) -> dict:
        return {"concept": self.concept.name, "train_config": asdict(self.cfg)}


def train_esd(model, concept: ConceptSpec, config: ESDConfig | None = None, progress: bool = True,
              name: str = "esd", out_dir=None, resume: bool = False) -> TrainResult:
    """ESD-style erasure over all scales (the adapter stays attached); ``out_dir``/``resume`` as S-VARE's."""
    return run_training(model, ESDObjective(concept, config, name), out_dir=out_dir, resume=resume,
                        progress=progress)


# -- training-free -----------------------------------------------------------------------------------------------

def swap_prompt(prompt: str, concept: ConceptSpec) -> str:
    """The anchor version of a prompt (concept words replaced by the anchor phrase), or the prompt itself
    when it does not mention the concept."""
    if prompt in concept.targets:
        return concept.anchors[concept.targets.index(prompt)]
    phrase = concept.anchor_name.replace("_", " ") if concept.anchor_name else ""
    if not phrase:
        return prompt
    return replace_words(prompt, concept.words or [concept.name], phrase)


def scale0_swap_conditions(model, prompts: list[str], concept: ConceptSpec) -> list[Condition]:
    """Per-scale conditions of the scale-0 prompt swap: the anchor prompt at scale 0, the prompt afterwards."""
    cond = model.encode_prompts(prompts)
    swapped = model.encode_prompts([swap_prompt(p, concept) for p in prompts])
    return [swapped] + [cond] * (model.schedule.num_scales - 1)
