"""SACE erasure: scale-0-confined adapters trained with the entropy-regularised erasure loss L_ER and the
restorative preservation loss L_pre (``shared/docs/METHOD.md`` §3; paper: arXiv 2606.15819, whose text
gives the ideas but no equations -- the equations here are the project's reconstruction).

Per step, with ``w``/``tau`` the deployment guidance and temperature of scale 0 and ``f_theta0`` the model
with adapters switched off (the frozen teacher; no copy is made):

* teacher ``q_b`` = guided scale-0 distribution of bit b of ``f_theta0`` under the anchor c;
* student ``p_b`` = guided scale-0 distribution of ``f_theta`` under the target c*;
* ``L_ER = mean_b KL(q_b || p_b) + lambda_H * mean_b H(p_b)`` (``--target hard``: cross-entropy to M bit
  vectors sampled from the teacher, plus the same entropy term);
* ``L_pre`` = mean over P = anchors + retain + entangled of ``mean_b KL(p_theta0 || p_theta)`` on the guided,
  the conditional and the null scale-0 distributions, plus ``mu`` times the same KL at scales 1..k_max on
  pyramids sampled from ``f_theta0`` for P (teacher-forced through both);
* ``L = L_ER + lambda_pre * L_pre``.

Only scale-0 logits are needed for the default losses: a teacher-forced pass over the first scale, i.e. one
token per prompt.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from ..adapters import AdapterConfig
from ..concepts.spec import ConceptSpec, has_context_prompts
from ..errors import SaceError
from ..models.base import Condition, TokenPyramid
from ..sampling import SamplingSettings, make_generators, sample
from . import losses as L
from .gate import resolve_auto_gate
from .trainer import Objective, OptimSettings, Trainer, TrainResult, jsonable, safe_name
from .trainer import run as run_training


@dataclass
class SACEConfig:
    """Hyper-parameters of SACE (defaults: METHOD.md §3, adjusted where the measurements required --
    see README "Erasure")."""

    modules: list[str] = field(default_factory=lambda: ["cross_attn_q", "cross_attn_kv", "cross_attn_out", "ffn"])
    rank: int = 8
    alpha: float = 8.0
    gate: str = "scale0"
    kind: str = "lora"
    isolation: str = "strict"
    lambda_h: float = 0.1
    lambda_pre: float = 1.0
    mu: float | None = None             # later-scale preservation weight (None: 0 for scale0, 0.1 shared,
    #                                     1 for an early-scale gate, where it covers the gated scales)
    k_max: int = 3                      # later-scale term covers scales 1..k_max (early-scale gate: its scales)
    target: str = "soft"                # "soft" (KL to the teacher) or "hard" (CE to M sampled bit vectors)
    hard_samples: int = 8
    steps: int = 300
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.97)
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    batch_size: int = 0                 # prompts per step from each set; 0 = all prompts every step
    guidance: float | None = None       # scale-0 guidance for the losses (None: the model's default)
    temperature: float | None = None
    seed: int = 0
    checkpoint_every: int = 50
    preserve_samples: int = 1           # pyramids per P prompt for the later-scale term

    def erase_scales(self) -> list[int]:
        """Scales whose logits L_ER (and the scale-wise L_pre) act on: the gated scales for an early-scale
        gate such as ``scales:0,1,2``; scale 0 for ``scale0`` and ``shared`` (METHOD.md §3)."""
        cfg = AdapterConfig(gate=self.gate)
        sc = cfg.scales()
        if sc is None:
            return [0]
        if min(sc) != 0 or sorted(sc) != list(range(max(sc) + 1)):
            raise SaceError(f"gate {self.gate!r}: an erasure gate must cover a prefix of scales 0..k "
                            f"(e.g. 'scales:0,1,2')")
        return sorted(sc)

    def mu_value(self) -> float:
        if self.mu is not None:
            return self.mu
        if self.gate == "shared":
            return 0.1
        return 1.0 if len(self.erase_scales()) > 1 else 0.0


_TITLES = {"sace": "SACE", "svare": "S-VARE", "esd": "ESD"}


def apply_model_defaults(cfg, model, key: str, **overrides):
    """Update a config dataclass in place with the model's measured defaults (``model.json`` ->
    ``defaults[key]``, i.e. ``model.method_defaults[key]``), then with ``overrides`` (``None`` values are
    ignored); returns ``cfg``.

    Shared by SACE (``key="sace"``) and the trained baselines (``"svare"``, ``"esd"``), so that every method
    gets the same per-model tuning.

    Raises:
        SaceError: an unknown field in the model's defaults or the overrides.
    """
    model_defaults = dict((getattr(model, "method_defaults", None) or {}).get(key) or {})
    for src in (model_defaults, overrides):
        for k, v in src.items():
            if v is None:
                continue
            if not hasattr(cfg, k):
                raise SaceError(f"unknown {_TITLES.get(key, key)} setting {k!r}")
            setattr(cfg, k, list(v) if isinstance(v, tuple) and k == "modules" else v)
    return cfg


def default_sace_config(model=None, **overrides) -> SACEConfig:
    """The SACE defaults for ``model``: :class:`SACEConfig`'s (METHOD.md §3), updated by the model's own
    measured defaults (``model.json`` -> ``defaults.sace``, e.g. the gate that ISSA showed the concept needs on
    that model), then by ``overrides`` (``None`` values are ignored).

    Raises:
        SaceError: an unknown field in the model's defaults or the overrides.
    """
    return apply_model_defaults(SACEConfig(), model, "sace", **overrides)


#: the result of :func:`erase` (the one training result type, shared with the baselines)
SACEResult = TrainResult


class SACEObjective(Objective):
    """SACE's L = L_ER + lambda_pre * L_pre (see the module docstring) for :class:`~.trainer.Trainer`.

    Args:
        model: the model the trainer will adapt (read for its defaults and token kind).
        concept: the :class:`ConceptSpec`. config: :class:`SACEConfig`.
    Raises:
        SaceError: an unknown ``target``, or ``target='hard'`` with an early-scale gate.
    """

    key, title = "sace", "SACE"
    progress_keys = ("L_ER", "L_pre", "entropy_target")

    def __init__(self, model, concept: ConceptSpec, config: SACEConfig | None = None):
        self.concept = concept.validate()
        self.cfg = config or default_sace_config(model)
        if self.cfg.target not in ("soft", "hard"):
            raise SaceError(f"--target must be 'soft' or 'hard', got {self.cfg.target!r}")
        if self.cfg.target == "hard" and self.cfg.erase_scales()[-1] > 0:
            raise SaceError("--target-mode hard is defined for the scale-0 gate only; use soft with an "
                            "early-scale gate")
        self.auto_gate = None
        if self.cfg.gate == "auto":     # issue 11: the smallest prefix of scales ISSA allows (erasure/gate.py)
            self.auto_gate = resolve_auto_gate(model, self.concept)
            self.cfg = replace(self.cfg, gate=self.auto_gate.gate)   # keeps a subclass's fields
        s = SamplingSettings(guidance=self.cfg.guidance, temperature=self.cfg.temperature).resolve(model)
        self.w, self.tau = float(s.guidance), float(s.temperature)

    def adapter_config(self, name: str | None) -> tuple[AdapterConfig, int | None]:
        c = self.cfg
        return AdapterConfig(name=name or safe_name(self.concept.name), modules=list(c.modules), rank=c.rank,
                             alpha=c.alpha, gate=c.gate, kind=c.kind, isolation=c.isolation), c.seed

    def optim(self) -> OptimSettings:
        c = self.cfg
        return OptimSettings(c.steps, c.lr, tuple(c.betas), c.weight_decay, c.grad_clip, c.seed, c.checkpoint_every)

    def prepare(self, trainer: Trainer) -> None:
        self.model, self.gen = trainer.model, trainer.gen
        self._prepare()

    def step(self, trainer: Trainer):
        vals = self.losses()
        yield vals["loss"], vals

    def metadata(self, trainer: Trainer) -> dict:
        return {"concept": self.concept.to_dict(), "sace_config": jsonable(asdict(self.cfg)), "guidance": self.w,
                "temperature": self.tau, "auto_gate": self.auto_gate.to_dict() if self.auto_gate else None}

    # -- fixed inputs and teacher outputs (computed once) ------------------------------------------------
    @torch.no_grad()
    def _scale0(self, cond: Condition, parts: bool = True):
        return self.model.forward_teacher_forced(cond, None, scales=[0], guidance=self.w, temperature=self.tau,
                                                 return_parts=parts)

    @torch.no_grad()
    def _prepare(self) -> None:
        # The new adapter starts at exactly zero (LoRA B = 0, dense delta = 0), so the model *now* is the
        # frozen teacher f_theta0 (including any adapters attached before this one): its outputs are
        # computed once here and never change.
        m, c = self.model, self.concept
        self.kind = m.token_kind
        self.cond_t = m.encode_prompts(c.targets)
        self.cond_a = m.encode_prompts(c.anchors)
        self.pres_prompts = c.preservation_prompts(context=has_context_prompts(m))
        self.cond_p = m.encode_prompts(self.pres_prompts)
        self.erase_k = self.cfg.erase_scales()[-1]
        if self.erase_k > 0:
            self._prepare_anchor_pyramids()                         # scale-0 targets included
            self.teacher_anchor = self.teacher_anchor_scales[0]
        else:
            g, _, _ = self._scale0(self.cond_a)
            self.teacher_anchor = g[0]                              # (Na, 1, d, 2) guided
        gp, cp, up = self._scale0(self.cond_p)
        self.teacher_p = (gp[0], cp[0] / self.tau, up[0] / self.tau)
        if self.cfg.target == "hard":
            self.hard_bits = self.kind.sample_independent(g[0], self.cfg.hard_samples, self.gen)  # (M, Na, 1, *F)
        self.mu = self.cfg.mu_value()
        if self.mu > 0:
            self._prepare_later_scales()

    @torch.no_grad()
    def _prepare_anchor_pyramids(self) -> None:
        """Early-scale gate: teacher targets at scales 0..k on pyramids the frozen model samples for the
        anchors (the target prompt i is teacher-forced on the pyramid of its paired anchor i)."""
        m, k = self.model, self.erase_k
        seeds = [self.cfg.seed * 7919 + 17 + i for i in range(self.cond_a.batch_size)]
        res = sample(m, self.cond_a, generator=make_generators(seeds), decode=False, keep_logits=False)
        pyr = TokenPyramid(res.pyramid.bits[: k + 1])
        self.anchor_inputs = m.tf_inputs(pyr, mode="sampling")[:, : m.schedule.offsets[k + 1] - 1]
        g = m.forward_teacher_forced(self.cond_a, self.anchor_inputs, scales=list(range(k + 1)), guidance=self.w,
                                     temperature=self.tau)
        self.teacher_anchor_scales = list(g.per_scale)             # k+1 x (Na, h*w, d, 2)

    @torch.no_grad()
    def _prepare_later_scales(self) -> None:
        m = self.model
        k_max = min(self.cfg.k_max if self.erase_k == 0 else self.erase_k, m.schedule.num_scales - 1)
        if k_max < 1:
            self.mu = 0.0
            return
        n = self.cond_p.batch_size
        reps = self.cfg.preserve_samples
        cond = self.cond_p.repeat_interleave(reps) if reps > 1 else self.cond_p
        seeds = [self.cfg.seed * 100003 + i for i in range(cond.batch_size)]
        res = sample(m, cond, generator=make_generators(seeds), decode=False, keep_logits=False)
        pyr = TokenPyramid(res.pyramid.bits[: k_max + 1])
        self.later_cond = cond
        self.later_k = k_max
        self.later_inputs = m.tf_inputs(pyr, mode="sampling")[:, : m.schedule.offsets[k_max + 1] - 1]
        g = m.forward_teacher_forced(cond, self.later_inputs, scales=list(range(1, k_max + 1)),
                                     guidance=self.w, temperature=self.tau)
        self.later_teacher = [z for z in g.per_scale]
        _ = n

    # -- one step ------------------------------------------------------------------------------------------
    def _subset(self, cond: Condition, idx: Tensor | None) -> Condition:
        return cond if idx is None else cond.index(idx)

    def _pick(self, n: int, scale: int = 1, batch: int | None = None) -> Tensor | None:
        b = (self.cfg.batch_size if batch is None else batch) * scale
        if not b or b >= n:
            return None
        return torch.randperm(n, generator=self.gen)[:b]

    def _pick_targets(self, batch: int | None = None) -> Tensor | None:
        """Target/anchor pair indices of one step: ``batch`` (default ``batch_size``) pairs, or for a merged
        concept that many pairs of *each* part (a random draw over the union gives a part only its share of
        the batch, and the measured multi-concept adapters under-erased the part with the fewest pairs)."""
        parts, b = self.concept.parts, (self.cfg.batch_size if batch is None else batch)
        if len(parts) < 2 or not b:
            return self._pick(self.cond_t.batch_size, batch=b)
        picks, start = [], 0
        for n in parts:
            idx = torch.arange(start, start + n) if b >= n else start + torch.randperm(n, generator=self.gen)[:b]
            picks.append(idx)
            start += n
        return torch.cat(picks)

    def _parts(self) -> int:
        return max(1, len(self.concept.parts))

    def losses(self) -> dict[str, Tensor]:
        """Compute the losses of one step (with grad) and the logged diagnostics."""
        m, cfg = self.model, self.cfg
        it = self._pick_targets()
        q = self.teacher_anchor if it is None else self.teacher_anchor[it]
        if self.erase_k > 0:
            # early-scale gate: the same KL at every gated scale (equal weight per scale), the student under c*
            # teacher-forced on the paired anchor pyramid
            inp = self.anchor_inputs if it is None else self.anchor_inputs[it]
            g_t = m.forward_teacher_forced(self._subset(self.cond_t, it), inp, scales=list(range(self.erase_k + 1)),
                                           guidance=self.w, temperature=self.tau)
            qs = [t if it is None else t[it] for t in self.teacher_anchor_scales]
            erase = L.kl_per_scale(self.kind, qs, g_t.per_scale)
            ent_t = L.entropy(self.kind, g_t.per_scale)
        else:
            g_t = m.forward_teacher_forced(self._subset(self.cond_t, it), None, scales=[0], guidance=self.w,
                                           temperature=self.tau)
            ent_t = L.entropy(self.kind, [g_t[0]])
            if cfg.target == "soft":
                erase = L.kl(self.kind, q, g_t[0])
            else:
                erase = L.cross_entropy(self.kind, g_t[0], self.hard_bits if it is None else self.hard_bits[:, it])
        p_t = g_t[0]                                                     # (Nt, 1, d, 2) guided scale 0
        l_er = erase + cfg.lambda_h * ent_t
        ip = self._pick(self.cond_p.batch_size, self._parts())   # as many preservation rows as target rows
        g_p, c_p, u_p = m.forward_teacher_forced(self._subset(self.cond_p, ip), None, scales=[0], guidance=self.w,
                                                 temperature=self.tau, return_parts=True)
        tg, tc, tu = (t if ip is None else t[ip] for t in self.teacher_p)
        l_pre0 = (L.kl(self.kind, tg, g_p[0]) + L.kl(self.kind, tc, c_p[0] / self.tau)
                  + L.kl(self.kind, tu, u_p[0] / self.tau)) / 3
        l_pre = l_pre0
        out = {}
        if self.mu > 0:
            il = self._pick(self.later_cond.batch_size, self._parts())
            cond = self._subset(self.later_cond, il)
            inp = self.later_inputs if il is None else self.later_inputs[il]
            g = m.forward_teacher_forced(cond, inp, scales=list(range(1, self.later_k + 1)), guidance=self.w,
                                         temperature=self.tau)
            l_late = L.kl_per_scale(self.kind, [t if il is None else t[il] for t in self.later_teacher], g.per_scale)
            l_pre = l_pre + self.mu * l_late
            out["L_pre_later"] = l_late
        loss = l_er + cfg.lambda_pre * l_pre
        with torch.no_grad():
            ent_p = self.kind.entropy(g_p[0]).mean()
            js = self.kind.js(p_t, q).mean()
        out.update({"loss": loss, "L_ER": l_er, "erase": erase, "L_pre": l_pre, "L_pre_scale0": l_pre0,
                    "entropy_target": ent_t, "entropy_preserve": ent_p, "js_target_anchor": js})
        return out

    def tokens_per_step(self, trainer: Trainer | None = None) -> int:
        """Transformer tokens processed per optimisation step (cond + null rows, one token each at scale 0,
        plus the later-scale term's prefix tokens)."""
        b = self.cfg.batch_size * self._parts()
        parts = self.concept.parts if len(self.concept.parts) > 1 else [self.cond_t.batch_size]
        nt = sum(min(self.cfg.batch_size or n, n) for n in parts)
        npres = min(b or self.cond_p.batch_size, self.cond_p.batch_size)
        n = 2 * (nt * self.model.schedule.offsets[self.erase_k + 1] + npres)
        if self.mu > 0:
            nl = min(b or self.later_cond.batch_size, self.later_cond.batch_size)
            n += 2 * nl * self.model.schedule.offsets[self.later_k + 1]
        return n


class SACETrainer(Trainer):
    """A :class:`~.trainer.Trainer` of :class:`SACEObjective` (the adapter is attached on construction).

    Args:
        model: an :class:`~sace.models.infinity.InfinityModel` (with a text encoder).
        concept, config: see :class:`SACEObjective`.
        work_dir: where checkpoints go (``--resume`` continues from the last one).
    """

    def __init__(self, model, concept: ConceptSpec, config: SACEConfig | None = None,
                 work_dir: str | os.PathLike | None = None, adapter_name: str | None = None):
        super().__init__(model, SACEObjective(model, concept, config), work_dir, adapter_name)
        self.cfg, self.concept = self.objective.cfg, self.objective.concept

    @property
    def erase_k(self) -> int:
        return self.objective.erase_k

    @property
    def mu(self) -> float:
        return self.objective.mu

    def losses(self) -> dict[str, Tensor]:
        return self.objective.losses()


def erase(model, concept: ConceptSpec, config: SACEConfig | None = None, out_dir: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a SACE adapter and (when ``out_dir`` is given) write it as an adapter folder
    (:func:`~.trainer.write_adapter_folder`; checkpoints go there every ``checkpoint_every`` steps).

    Args:
        model: the model (the adapter stays attached after training: generate with it right away).
        concept: what to erase. config: :class:`SACEConfig`.
        resume: continue from ``out_dir/sace_checkpoint.pt``.
    Returns:
        :class:`~.trainer.TrainResult` (adapter, per-step log, wall time, tokens per step, folder).
    """
    return run_training(model, SACEObjective(model, concept, config), out_dir=out_dir, resume=resume,
                        progress=progress)
