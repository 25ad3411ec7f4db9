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
* **Training-free**: a negative prompt (the concept prompt as the guidance's unconditional side) and the
  scale-0 prompt swap (the anchor prompt conditions scale 0 only).

Every baseline reports its wall time, tokens per step and peak memory like SACE does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..adapters import Adapter, AdapterConfig, attach_adapter
from ..errors import SaceError
from ..models.base import Condition
from ..sampling import make_generators, sample
from ..validation import check_train_config
from .concepts import ConceptSpec, replace_words


@dataclass
class BaselineResult:
    name: str
    adapter: Adapter | None
    seconds: float
    steps: int
    tokens_per_step: int
    log: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True)


def _teacher_defaults(model, guidance, temperature):
    d = model.defaults
    return (float(d["guidance"] if guidance is None else guidance),
            float(d["temperature"] if temperature is None else temperature))


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


def train_svare(model, concept: ConceptSpec, config: SVAREConfig | None = None, progress: bool = True,
                name: str = "svare") -> BaselineResult:
    """Train the S-VARE baseline (an all-scale dense adapter). The adapter stays attached to ``model``."""
    cfg = config or SVAREConfig()
    check_train_config(cfg, model)
    w, _ = _teacher_defaults(model, cfg.guidance, None)
    sch = model.schedule
    for p in model.parameters():
        p.requires_grad_(False)
    ad = attach_adapter(model, AdapterConfig(name=name, modules=cfg.modules, gate="shared", kind="full"))
    params = ad.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.97), weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    cond_t = model.encode_prompts(concept.targets)
    cond_a = model.encode_prompts(concept.anchors)
    # teacher pass (frozen model = the model with the zero-initialised adapter): anchor pyramids and the
    # guided teacher logits on them, tau = 1 (S-VARE's preprocessing)
    with torch.no_grad():
        seeds = [cfg.seed * 7919 + i for i in range(cond_a.batch_size)]
        res = sample(model, cond_a, generator=make_generators(seeds), guidance=w,
                     temperature=cfg.teacher_temperature, decode=False, keep_logits=True)
        anchor_bits = res.pyramid
        tf = model.tf_inputs(anchor_bits, mode="sampling")
        teacher = res.logits            # guided / tau = 1 logits the anchor bits were drawn from
    n_tok = sch.num_tokens
    log = []
    bar = _progress(cfg.steps, "S-VARE", progress)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randperm(cond_t.batch_size, generator=gen)[: cfg.batch_size]
        # 1) erase: student under c* on the anchor's tokens, filtered per-bit CE to the anchor bits
        z = model.forward_teacher_forced(cond_t.index(idx), tf[idx])
        ce_sum = 0.0
        for k, zk in enumerate(z.per_scale):
            lab = anchor_bits.flat(k)[idx]
            ce = F.cross_entropy(zk.permute(0, 3, 1, 2), lab, reduction="none")   # (b, n_k, d)
            wrong = (ce > math.log(2)).float().mean(-1)                            # fraction of wrong bits
            keep = (wrong >= cfg.alpha).float()
            ce_sum = ce_sum + (ce.mean(-1) * keep).sum(1)
        loss_e = (ce_sum / n_tok).mean()
        opt.zero_grad(set_to_none=True)
        loss_e.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        # 2) preserve: KL(teacher || student) on the anchor prompt, second optimiser step
        z2 = model.forward_teacher_forced(cond_a.index(idx), tf[idx])
        kl_sum = 0.0
        for k, zk in enumerate(z2.per_scale):
            lq = teacher[k][idx].float().log_softmax(-1)
            lp = zk.float().log_softmax(-1)
            kl_sum = kl_sum + (lq.exp() * (lq - lp)).sum(-1).mean(-1).sum(1)
        loss_p = cfg.kl_weight * (kl_sum / n_tok).mean()
        opt.zero_grad(set_to_none=True)
        loss_p.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if not (torch.isfinite(loss_e) and torch.isfinite(loss_p)):
            raise SaceError(f"S-VARE loss became non-finite at step {step}")
        log.append({"step": step + 1, "L_FCE": round(loss_e.item(), 6), "L_pre": round(loss_p.item(), 6)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(L_FCE=f"{loss_e.item():.4f}", L_pre=f"{loss_p.item():.4f}")
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    for p in params:
        p.requires_grad_(False)
    b = min(cfg.batch_size, cond_t.batch_size)
    ad.metadata.update({"method": "S-VARE", "concept": concept.name, "config": asdict(cfg), "train_seconds": secs})
    return BaselineResult("S-VARE", ad, secs, cfg.steps, 2 * b * n_tok, log, asdict(cfg))


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


def train_esd(model, concept: ConceptSpec, config: ESDConfig | None = None, progress: bool = True,
              name: str = "esd") -> BaselineResult:
    """ESD-style erasure over all scales on the student's own sampled history (the adapter stays attached)."""
    cfg = config or ESDConfig()
    check_train_config(cfg, model)
    w, tau = _teacher_defaults(model, cfg.guidance, cfg.temperature)
    sch = model.schedule
    for p in model.parameters():
        p.requires_grad_(False)
    ad_cfg = AdapterConfig(name=name, modules=cfg.modules, rank=cfg.rank, alpha=cfg.alpha, gate="shared", kind="lora")
    ad = attach_adapter(model, ad_cfg, seed=cfg.seed)
    params = ad.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.97))
    gen = torch.Generator().manual_seed(cfg.seed)
    cond_t = model.encode_prompts(concept.targets)
    from ..adapters import set_adapters_enabled
    log = []
    bar = _progress(cfg.steps, "ESD", progress)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randperm(cond_t.batch_size, generator=gen)[: cfg.batch_size]
        c = cond_t.index(idx)
        with torch.no_grad():
            seeds = [int(x) for x in torch.randint(0, 2**31 - 1, (len(idx),), generator=gen)]
            pyr = sample(model, c, generator=make_generators(seeds), guidance=w, temperature=tau, decode=False,
                         keep_logits=False).pyramid
            tf = model.tf_inputs(pyr, mode="sampling")
            set_adapters_enabled(model, False)
            try:
                _, zc, zu = model.forward_teacher_forced(c, tf, uncond=model.null_condition(c), return_parts=True)
            finally:
                set_adapters_enabled(model, True)
            target = [u - cfg.eta * (cc - u) for cc, u in zip(zc.per_scale, zu.per_scale)]
        z = model.forward_teacher_forced(c, tf)
        loss = torch.stack([
            (t.float().softmax(-1) * (t.float().log_softmax(-1) - s.float().log_softmax(-1))).sum(-1).mean()
            for t, s in zip(target, z.per_scale)]).mean()
        if not torch.isfinite(loss):
            raise SaceError(f"ESD loss became non-finite at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        log.append({"step": step + 1, "loss": round(loss.item(), 6)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    for p in params:
        p.requires_grad_(False)
    b = min(cfg.batch_size, cond_t.batch_size)
    ad.metadata.update({"method": "ESD-all-scales", "concept": concept.name, "config": asdict(cfg),
                        "train_seconds": secs})
    return BaselineResult("ESD (all scales)", ad, secs, cfg.steps, b * (sch.num_tokens * 3), log, asdict(cfg))


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


def negative_prompt_condition(model, prompts: list[str], concept: ConceptSpec) -> Condition:
    """The unconditional side for the negative-prompt baseline: the concept's canonical prompt."""
    return model.encode_prompts([concept.targets[0]] * len(prompts))

