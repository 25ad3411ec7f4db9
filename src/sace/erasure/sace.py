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

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..adapters import Adapter, AdapterConfig, attach_adapter, save_adapter
from ..errors import SaceError
from ..io import atomic_path, torch_load_weights, write_json
from ..models.base import Condition, TokenPyramid, bit_entropy
from .concepts import ConceptSpec


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
    ``defaults[key]``), then with ``overrides`` (``None`` values are ignored); returns ``cfg``.

    Shared by SACE (``key="sace"``) and the trained baselines (``"svare"``, ``"esd"``), so that every method
    gets the same per-model tuning.

    Raises:
        SaceError: an unknown field in the model's defaults or the overrides.
    """
    model_defaults = dict((getattr(model, "defaults", None) or {}).get(key) or {})
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


@dataclass
class SACEResult:
    adapter: Adapter
    log: list[dict]
    seconds: float
    tokens_per_step: int
    folder: Path | None = None


def _kl_bits(q_logits: Tensor, p_logits: Tensor) -> Tensor:
    """Mean over everything of KL(q || p) for binary distributions given as logits ``(..., 2)``."""
    lq = q_logits.float().log_softmax(-1)
    lp = p_logits.float().log_softmax(-1)
    return (lq.exp() * (lq - lp)).sum(-1).mean()


def _js_bits(a: Tensor, b: Tensor) -> Tensor:
    pa, pb = a.float().softmax(-1), b.float().softmax(-1)
    m = 0.5 * (pa + pb)
    kl = lambda p: (p * (p.clamp_min(1e-12).log() - m.clamp_min(1e-12).log())).sum(-1)
    return (0.5 * kl(pa) + 0.5 * kl(pb)).mean()


class SACETrainer:
    """Trains one SACE adapter on a model for a concept (see the module docstring).

    Args:
        model: an :class:`~sace.models.infinity.InfinityModel` (with a text encoder).
        concept: the :class:`ConceptSpec`.
        config: :class:`SACEConfig`.
        work_dir: where checkpoints go (``--resume`` continues from the last one).
    """

    def __init__(self, model, concept: ConceptSpec, config: SACEConfig | None = None,
                 work_dir: str | os.PathLike | None = None, adapter_name: str | None = None):
        self.model = model
        self.concept = concept.validate()
        self.cfg = config or default_sace_config(model)
        if self.cfg.target not in ("soft", "hard"):
            raise SaceError(f"--target must be 'soft' or 'hard', got {self.cfg.target!r}")
        if self.cfg.target == "hard" and self.cfg.erase_scales()[-1] > 0:
            raise SaceError("--target-mode hard is defined for the scale-0 gate only; use soft with an "
                            "early-scale gate")
        self.work_dir = Path(work_dir) if work_dir else None
        self.auto_gate = None
        if self.cfg.gate == "auto":     # issue 11: the smallest prefix of scales ISSA allows (erasure/gate.py)
            from .gate import resolve_auto_gate
            self.auto_gate = resolve_auto_gate(model, self.concept)
            self.cfg = SACEConfig(**{**asdict(self.cfg), "gate": self.auto_gate.gate})
        d = model.defaults
        self.w = float(d["guidance"] if self.cfg.guidance is None else self.cfg.guidance)
        self.tau = float(d["temperature"] if self.cfg.temperature is None else self.cfg.temperature)
        for p in model.parameters():
            p.requires_grad_(False)
        self.adapter = attach_adapter(model, AdapterConfig(
            name=adapter_name or _safe_name(concept.name), modules=list(self.cfg.modules), rank=self.cfg.rank,
            alpha=self.cfg.alpha, gate=self.cfg.gate, kind=self.cfg.kind, isolation=self.cfg.isolation),
            seed=self.cfg.seed)
        self.params = self.adapter.parameters()
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(self.params, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                     weight_decay=self.cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.step = 0
        self.log: list[dict] = []
        self._prepare()

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
        self.cond_t = m.encode_prompts(c.targets)
        self.cond_a = m.encode_prompts(c.anchors)
        self.pres_prompts = c.preservation_prompts()
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
            probs = g[0].float().softmax(-1)[..., 1]                # (Na, 1, d)
            u = torch.rand((self.cfg.hard_samples, *probs.shape), generator=self.gen)
            self.hard_bits = (u < probs).long()                     # (M, Na, 1, d)
        self.mu = self.cfg.mu_value()
        if self.mu > 0:
            self._prepare_later_scales()

    @torch.no_grad()
    def _prepare_anchor_pyramids(self) -> None:
        """Early-scale gate: teacher targets at scales 0..k on pyramids the frozen model samples for the
        anchors (the target prompt i is teacher-forced on the pyramid of its paired anchor i)."""
        from ..sampling import make_generators, sample

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
        from ..sampling import make_generators, sample

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

    def _pick(self, n: int) -> Tensor | None:
        b = self.cfg.batch_size
        if not b or b >= n:
            return None
        return torch.randperm(n, generator=self.gen)[:b]

    def losses(self) -> dict[str, Tensor]:
        """Compute the losses of one step (with grad) and the logged diagnostics."""
        m, cfg = self.model, self.cfg
        it = self._pick(self.cond_t.batch_size)
        q = self.teacher_anchor if it is None else self.teacher_anchor[it]
        if self.erase_k > 0:
            # early-scale gate: the same KL at every gated scale (equal weight per scale), the student under c*
            # teacher-forced on the paired anchor pyramid
            inp = self.anchor_inputs if it is None else self.anchor_inputs[it]
            g_t = m.forward_teacher_forced(self._subset(self.cond_t, it), inp, scales=list(range(self.erase_k + 1)),
                                           guidance=self.w, temperature=self.tau)
            qs = [t if it is None else t[it] for t in self.teacher_anchor_scales]
            erase = torch.stack([_kl_bits(a, b) for a, b in zip(qs, g_t.per_scale)]).mean()
            ent_t = torch.stack([bit_entropy(z).mean() for z in g_t.per_scale]).mean()
        else:
            g_t = m.forward_teacher_forced(self._subset(self.cond_t, it), None, scales=[0], guidance=self.w,
                                           temperature=self.tau)
            ent_t = bit_entropy(g_t[0]).mean()
            if cfg.target == "soft":
                erase = _kl_bits(q, g_t[0])
            else:
                bits = self.hard_bits if it is None else self.hard_bits[:, it]
                logp = g_t[0].float().log_softmax(-1).unsqueeze(0).expand(bits.shape[0], *g_t[0].shape)
                erase = -logp.gather(-1, bits.unsqueeze(-1)).mean()
        p_t = g_t[0]                                                     # (Nt, 1, d, 2) guided scale 0
        l_er = erase + cfg.lambda_h * ent_t
        ip = self._pick(self.cond_p.batch_size)
        g_p, c_p, u_p = m.forward_teacher_forced(self._subset(self.cond_p, ip), None, scales=[0], guidance=self.w,
                                                 temperature=self.tau, return_parts=True)
        tg, tc, tu = (t if ip is None else t[ip] for t in self.teacher_p)
        l_pre0 = (_kl_bits(tg, g_p[0]) + _kl_bits(tc, c_p[0] / self.tau) + _kl_bits(tu, u_p[0] / self.tau)) / 3
        l_pre = l_pre0
        out = {}
        if self.mu > 0:
            il = self._pick(self.later_cond.batch_size)
            cond = self._subset(self.later_cond, il)
            inp = self.later_inputs if il is None else self.later_inputs[il]
            g = m.forward_teacher_forced(cond, inp, scales=list(range(1, self.later_k + 1)), guidance=self.w,
                                         temperature=self.tau)
            kls = [_kl_bits(t if il is None else t[il], s) for t, s in zip(self.later_teacher, g.per_scale)]
            l_late = torch.stack(kls).mean()
            l_pre = l_pre + self.mu * l_late
            out["L_pre_later"] = l_late
        loss = l_er + cfg.lambda_pre * l_pre
        with torch.no_grad():
            ent_p = bit_entropy(g_p[0]).mean()
            js = _js_bits(p_t, q)
        out.update({"loss": loss, "L_ER": l_er, "erase": erase, "L_pre": l_pre, "L_pre_scale0": l_pre0,
                    "entropy_target": ent_t, "entropy_preserve": ent_p, "js_target_anchor": js})
        return out

    def _ckpt_path(self) -> Path | None:
        return self.work_dir / "sace_checkpoint.pt" if self.work_dir else None

    def save_checkpoint(self) -> None:
        p = self._ckpt_path()
        if p is None:
            return
        bad = [k for k, v in self.adapter.state_dict().items() if not torch.isfinite(v).all()]
        if bad:
            raise SaceError(f"adapter parameters became non-finite at step {self.step} ({', '.join(bad[:3])}); "
                            f"not overwriting the last good checkpoint {p} (lower --lr)")
        state = {"adapter": self.adapter.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "gen": self.gen.get_state(), "log": self.log}
        with atomic_path(p) as tmp:
            torch.save(state, tmp)

    def resume(self) -> bool:
        """Load the last checkpoint in ``work_dir`` (returns False when there is none)."""
        p = self._ckpt_path()
        if p is None or not p.exists():
            return False
        st = torch_load_weights(p)
        sd = st["adapter"]
        with torch.no_grad():
            for name, br in self.adapter.modules.items():
                for pn, prm in br.named_parameters():
                    prm.copy_(sd[f"{name}.{pn}"])
        self.opt.load_state_dict(st["opt"])
        self.gen.set_state(st["gen"])
        self.step = int(st["step"])
        self.log = list(st["log"])
        return True

    def train(self, progress: bool = True, callback=None) -> SACEResult:
        """Run (the remaining) ``config.steps`` optimisation steps.

        Raises:
            SaceError: a loss becomes NaN/inf (training stops; the last good checkpoint is kept).
        """
        cfg = self.cfg
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=cfg.steps, initial=self.step, desc=f"SACE {self.concept.name}", dynamic_ncols=True)
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            vals = self.losses()
            loss = vals["loss"]
            if not torch.isfinite(loss):
                where = f"; last good checkpoint: {self._ckpt_path()}" if self._ckpt_path() else ""
                raise SaceError(f"SACE loss became {loss.item()} at step {self.step} (lower --lr or --lambda-h)"
                                + where)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            if not torch.isfinite(gn):
                raise SaceError(f"SACE gradient became non-finite at step {self.step}")
            self.opt.step()
            self.step += 1
            rec = {"step": self.step, **{k: round(float(v.detach()), 6) for k, v in vals.items()}}
            self.log.append(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(L_ER=f"{rec['L_ER']:.3f}", L_pre=f"{rec['L_pre']:.4f}",
                                H_t=f"{rec['entropy_target']:.3f}")
            if callback is not None:
                callback(rec)
            if self.work_dir and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        secs = time.perf_counter() - t0
        for p in self.params:
            p.requires_grad_(False)
        n_tok = self.tokens_per_step()
        self.adapter.metadata.update({
            "method": "SACE", "concept": self.concept.to_dict(), "sace_config": _jsonable(asdict(cfg)),
            "guidance": self.w, "temperature": self.tau, "train_seconds": round(secs, 3), "steps": self.step,
            "tokens_per_step": n_tok, "final_log": self.log[-1] if self.log else {},
            "auto_gate": self.auto_gate.to_dict() if self.auto_gate else None,
        })
        return SACEResult(self.adapter, self.log, secs, n_tok)

    def tokens_per_step(self) -> int:
        """Transformer tokens processed per optimisation step (cond + null rows, one token each at scale 0,
        plus the later-scale term's prefix tokens)."""
        nt = self.cfg.batch_size or self.cond_t.batch_size
        nt = min(nt, self.cond_t.batch_size)
        npres = min(self.cfg.batch_size or self.cond_p.batch_size, self.cond_p.batch_size)
        n = 2 * (nt * self.model.schedule.offsets[self.erase_k + 1] + npres)
        if self.mu > 0:
            nl = min(self.cfg.batch_size or self.later_cond.batch_size, self.later_cond.batch_size)
            n += 2 * nl * self.model.schedule.offsets[self.later_k + 1]
        return n


def _safe_name(name: str) -> str:
    import re
    s = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_")
    return s or "concept"


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d


def erase(model, concept: ConceptSpec, config: SACEConfig | None = None, out_dir: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True) -> SACEResult:
    """Train a SACE adapter and (when ``out_dir`` is given) save it as an adapter folder.

    Args:
        model: the model (the adapter stays attached after training: generate with it right away).
        concept: what to erase. config: :class:`SACEConfig`.
        out_dir: adapter folder (``adapter.safetensors`` + ``adapter.json`` + ``train_log.json``);
            checkpoints are written there every ``checkpoint_every`` steps.
        resume: continue from ``out_dir/sace_checkpoint.pt``.
    Returns:
        :class:`SACEResult` (adapter, per-step log, wall time, tokens per step).
    """
    tr = SACETrainer(model, concept, config, work_dir=out_dir)
    if resume and not tr.resume():
        raise SaceError(f"--resume given but no checkpoint in {out_dir}")
    res = tr.train(progress=progress)
    if out_dir is not None:
        folder = save_adapter(res.adapter, out_dir, model=model)
        write_json(Path(out_dir) / "train_log.json", {"log": res.log, "seconds": res.seconds,
                                                     "tokens_per_step": res.tokens_per_step})
        ck = tr._ckpt_path()
        if ck is not None and ck.exists():
            ck.unlink()
        res.folder = folder
    return res
