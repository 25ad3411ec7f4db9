"""Robust SACE: SACE trained against an inner adversary (issue 21; ``shared/docs/robustness.md``).

Robust erasers for diffusion models (AdvUnlearn, Receler, RACE) alternate an inner attack on the text
condition with the erasure update. On a next-scale model the inner attack is cheap, because the early scales
that decide the concept hold a handful of tokens. Each training step here:

1. **Inner attack** (warm-started, ``adv_steps`` Adam steps): a *universal trigger* ``delta`` -- ``adv_tokens``
   free text states spliced in before the last token of every target prompt (a class-conditional model: an
   additive change of its class embedding) -- maximises the adapted model's teacher-forced log-likelihood of
   concept pyramids that the frozen model drew for the target prompts, on scales ``0 .. adv_scales-1`` (the
   soft-prompt attack's objective, ``sace.attacks.soft_prompt``, confined to the early scales). Each trigger
   state is kept within ``adv_norm`` times the largest real token norm of the target prompts.
2. **Outer update**: SACE's ``L_ER + lambda_pre * L_pre`` (:mod:`.sace`) plus

   * ``L_adv`` = SACE's erasure KL with the trigger in the target prompts: the adapted model under
     ``c* (+) delta`` must follow the frozen model's anchor distribution at every gated scale;
   * ``L_pre_trig`` = the preservation KL with the trigger in the preservation prompts against the frozen
     model's outputs for the *same triggered* prompts (the adapter switched off), so that the adapter cannot
     meet ``L_adv`` by steering every triggered prompt to the anchor (measured: without it a neighbour class
     drifted to the anchor); against the clean prompts' outputs instead the term starts above zero and
     fought L_ER (sneaker: ACC_e 0.28, ACC_i -16 points);

   ``L = L_ER + adv_weight * L_adv + lambda_t * (L_pre + adv_retain * L_pre_trig)``.
3. **Dual ascent on lambda_pre** (``pre_target``): ``lambda_t`` grows while the clean preservation loss is above
   ``pre_target`` and shrinks back towards ``lambda_pre`` when it is below, within
   ``[lambda_pre, pre_max_scale * lambda_pre]`` -- a constraint "keep the neighbours" rather than a fixed
   trade-off, which the measurements needed because the adversary's pull on the neighbours differs by class.

With ``adv_steps = 0`` and ``adv_weight = adv_retain = 0`` and ``pre_target = None`` this is SACE.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..adapters import adapter_set
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..models.base import Condition, TokenPyramid
from ..sampling import make_generators, sample
from . import losses as L
from .sace import SACEConfig, SACEObjective, apply_model_defaults
from .trainer import Trainer, jsonable


@dataclass
class RobustSACEConfig(SACEConfig):
    """SACE's settings plus the inner adversary and the preservation constraint (module docstring)."""

    adv_steps: int = 2              # inner Adam steps per training step (the trigger is warm-started)
    adv_lr: float = 0.05            # Adam learning rate of the trigger (text states have norms of ~5-15)
    adv_tokens: int = 4             # trigger states spliced into each prompt (class-conditional: ignored)
    adv_norm: float = 1.0           # trigger state norm bound, relative to the largest real token norm
    adv_scales: int = 3             # scales of the adversary's likelihood: 0 .. adv_scales-1
    adv_weight: float = 1.0         # weight of L_adv
    adv_retain: float = 1.0         # weight of L_pre_trig (inside the lambda_t bracket)
    adv_warmup: int = 0             # steps of plain SACE before the adversary starts
    pre_target: float | None = 0.01  # dual-ascent target of L_pre (None: fixed lambda_pre)
    pre_max_scale: float = 30.0     # lambda_t <= pre_max_scale * lambda_pre
    dual_lr: float = 0.1            # multiplicative step of lambda_t per training step

    def check(self) -> None:
        """Raises SaceError on settings outside their ranges (before any work)."""
        if self.adv_steps < 0 or self.adv_tokens < 1 or self.adv_scales < 1 or self.adv_warmup < 0:
            raise SaceError("robust SACE: adv_steps >= 0, adv_tokens >= 1, adv_scales >= 1, adv_warmup >= 0")
        for k in ("adv_lr", "adv_norm", "dual_lr"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) > 0):
                raise SaceError(f"robust SACE: {k} must be a finite number > 0, got {getattr(self, k)}")
        for k in ("adv_weight", "adv_retain"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) >= 0):
                raise SaceError(f"robust SACE: {k} must be a finite number >= 0, got {getattr(self, k)}")
        if self.pre_target is not None and not (math.isfinite(self.pre_target) and self.pre_target > 0):
            raise SaceError(f"robust SACE: pre_target must be > 0 (or None), got {self.pre_target}")
        if not (math.isfinite(self.pre_max_scale) and self.pre_max_scale >= 1):
            raise SaceError(f"robust SACE: pre_max_scale must be >= 1, got {self.pre_max_scale}")


def default_robust_config(model=None, **overrides) -> RobustSACEConfig:
    """Robust SACE's defaults for ``model``: :class:`RobustSACEConfig`'s, then the model's SACE defaults
    (``model.json`` -> ``defaults.sace``: gate, lr, steps ...), then its robust ones (``defaults.rsace``),
    then ``overrides`` (``None`` values ignored).

    Raises:
        SaceError: an unknown field in the model's defaults or the overrides.
    """
    cfg = apply_model_defaults(RobustSACEConfig(), model, "sace")
    return apply_model_defaults(cfg, model, "rsace", **overrides)


def _continuous(model, cond: Condition) -> Condition:
    """The condition as continuous states: a class-conditional model's class indices become its class
    embedding rows (``model.continuous_condition``); text states are returned as they are."""
    to_states = getattr(model, "continuous_condition", None)
    return to_states(cond) if to_states is not None else cond


@contextmanager
def _teacher(model, name: str):
    """Inside: the frozen teacher, i.e. the model with every adapter active now except the one in training."""
    s = adapter_set(model)
    active = {n for layer in s.layers() for n, br in layer.branches.items() if br.active and n != name}
    with s.only(sorted(active)):
        yield


class Trigger:
    """A universal trigger shared by every row of a condition.

    ``insert`` (text states ``(B, T, C)``): ``states (n, C)`` spliced in before each row's last real token;
    ``add`` (one state per row, e.g. a class embedding ``(B, 1, C)``): ``states (1, C)`` added to it.
    :meth:`apply` is differentiable in :attr:`states`; :meth:`project_` keeps every state within ``bound``.
    """

    def __init__(self, like: Condition, n_tokens: int, rel_norm: float, generator: torch.Generator):
        x, mask = like.tokens.detach(), like.mask
        self.mode = "add" if x.shape[1] == 1 else "insert"
        self.bound = float(rel_norm * (x.norm(dim=-1) * mask).amax())
        if self.mode == "add":
            init = 0.01 * self.bound * torch.randn((1, x.shape[2]), generator=generator)
        else:
            # start from real token states of the target prompts (seeded picks): a point the encoder can reach
            flat = x[mask]
            init = flat[torch.randint(0, flat.shape[0], (n_tokens,), generator=generator)].clone()
        self.states = init.to(x.dtype).requires_grad_(True)
        self.project_()

    def apply(self, cond: Condition, states: Tensor | None = None) -> Condition:
        """``cond`` with the trigger (``states``: another value of it, e.g. a detached copy)."""
        s = self.states if states is None else states
        x, mask = cond.tokens, cond.mask
        if self.mode == "add":
            return Condition(x + s.view(1, 1, -1) * mask[..., None], mask, cond.prompts, cond.is_null)
        n, (b, t, c) = s.shape[0], x.shape
        rows = []
        for i in range(b):
            k = int(mask[i].sum())
            rows.append(torch.cat([x[i, :k - 1], s, x[i, k - 1:k], x.new_zeros(t - k, c)]))
        new_mask = torch.arange(t + n, device=mask.device)[None, :] < (mask.sum(1, keepdim=True) + n)
        return Condition(torch.stack(rows), new_mask, cond.prompts, cond.is_null)

    @torch.no_grad()
    def project_(self) -> None:
        norm = self.states.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.states.mul_((self.bound / norm).clamp(max=1.0))


class RobustSACEObjective(SACEObjective):
    """Robust SACE (module docstring) for :class:`~.trainer.Trainer`.

    Args:
        model: the model the trainer will adapt. concept: the :class:`ConceptSpec`.
        config: :class:`RobustSACEConfig` (default: :func:`default_robust_config`).
    Raises:
        SaceError: settings out of range; as :class:`~.sace.SACEObjective`.
    """

    key, title = "rsace", "robust SACE"
    progress_keys = ("L_ER", "L_adv", "L_pre", "lambda_pre")

    def __init__(self, model, concept: ConceptSpec, config: RobustSACEConfig | None = None):
        config = config or default_robust_config(model)
        if not isinstance(config, RobustSACEConfig):
            config = RobustSACEConfig(**asdict(config))
        config.check()
        super().__init__(model, concept, config)
        self.lam = float(self.cfg.lambda_pre)
        self.lam_hist: list[float] = []     # lambda_t of every step so far (its length = steps done)

    # -- preparation -------------------------------------------------------------------------------------
    def prepare(self, trainer: Trainer) -> None:
        self.adapter_name = trainer.adapter.config.name
        super().prepare(trainer)

    @torch.no_grad()
    def _prepare(self) -> None:
        super()._prepare()
        m, cfg = self.model, self.cfg
        self.adv_k = min(cfg.adv_scales, m.schedule.num_scales) - 1
        # concept pyramids of the frozen model (the new adapter is zero), one per target prompt, up to adv_k
        seeds = [cfg.seed * 4099 + 911 + i for i in range(self.cond_t.batch_size)]
        res = sample(m, self.cond_t, generator=make_generators(seeds), decode=False, keep_logits=False)
        self.adv_pyramid = TokenPyramid(res.pyramid.bits[: self.adv_k + 1])
        self.adv_inputs = m.tf_inputs(self.adv_pyramid, mode="sampling")[:, : m.schedule.offsets[self.adv_k + 1] - 1]
        self.states_t = _continuous(m, self.cond_t)
        if self.states_t.channels == 1:
            raise SaceError(f"robust SACE needs continuous conditions (text states or class embeddings); the "
                            f"{getattr(m, 'family', 'model')} model gives class indices only")
        self.states_p = _continuous(m, self.cond_p)
        self.states_later = _continuous(m, self.later_cond) if self.mu > 0 else None
        # its own generator: with the adversary off, the run draws exactly what SACE draws
        self.trigger = Trigger(self.states_t, cfg.adv_tokens, cfg.adv_norm,
                               torch.Generator().manual_seed(cfg.seed * 7 + 3))
        self.adv_opt = torch.optim.Adam([self.trigger.states], lr=cfg.adv_lr)

    # -- the inner attack --------------------------------------------------------------------------------
    def adversary_objective(self, it: Tensor | None = None) -> Tensor:
        """Mean log-likelihood (nats per token element) of the frozen model's concept pyramids under the
        adapted model with the trigger in the target prompts, scales ``0 .. adv_scales-1``; differentiable in
        the trigger (and the adapter)."""
        m = self.model
        cond = self.trigger.apply(self._subset(self.states_t, it))
        inp = self.adv_inputs if it is None else self.adv_inputs[it]
        z = m.forward_teacher_forced(cond, inp, scales=list(range(self.adv_k + 1)), guidance=self.w,
                                     temperature=self.tau)
        total, count = 0.0, 0
        for k, logits in enumerate(z.per_scale):
            bits = self.adv_pyramid.flat(k)
            lp = self.kind.log_prob(logits, bits if it is None else bits[it])
            total = total + lp.flatten(1).sum(1)
            count += lp[0].numel()
        return (total / count).mean()

    def attack_step(self, it: Tensor | None = None) -> list[float]:
        """``adv_steps`` Adam steps of the trigger (the adapter is not updated); returns the objective before
        each step and after the last (``adv_steps + 1`` values)."""
        hist = []
        for step in range(self.cfg.adv_steps + 1):
            ll = self.adversary_objective(it)
            if not torch.isfinite(ll):
                raise SaceError("robust SACE: the inner attack's objective became non-finite (lower --adv-lr)")
            hist.append(float(ll.detach()))
            if step == self.cfg.adv_steps:
                break
            (g,) = torch.autograd.grad(-ll, [self.trigger.states])
            self.adv_opt.zero_grad(set_to_none=True)
            self.trigger.states.grad = g
            self.adv_opt.step()
            self.trigger.project_()
        return hist

    # -- one step ------------------------------------------------------------------------------------------
    def _triggered_erase(self, it: Tensor | None, delta: Tensor) -> Tensor:
        m = self.model
        cond = self.trigger.apply(self._subset(self.states_t, it), delta)
        if self.erase_k > 0:
            inp = self.anchor_inputs if it is None else self.anchor_inputs[it]
            g = m.forward_teacher_forced(cond, inp, scales=list(range(self.erase_k + 1)), guidance=self.w,
                                         temperature=self.tau)
            qs = [t if it is None else t[it] for t in self.teacher_anchor_scales]
            return L.kl_per_scale(self.kind, qs, g.per_scale)
        g = m.forward_teacher_forced(cond, None, scales=[0], guidance=self.w, temperature=self.tau)
        return L.kl(self.kind, self.teacher_anchor if it is None else self.teacher_anchor[it], g[0])

    def _triggered_preservation(self, delta: Tensor) -> Tensor:
        """Preservation KL of triggered preservation prompts: the adapted model against the frozen one on the
        same triggered prompts (guided, scale 0; with the later-scale term, also at its scales on its
        pyramids, whose teacher-forced prefix is fixed)."""
        m = self.model

        def kl(cond: Condition, inp: Tensor | None, scales: list[int]) -> Tensor:
            run = lambda: m.forward_teacher_forced(cond, inp, scales=scales, guidance=self.w,  # noqa: E731
                                                   temperature=self.tau)
            with torch.no_grad(), _teacher(m, self.adapter_name):
                q = run().per_scale
            return L.kl_per_scale(self.kind, list(q), run().per_scale)

        ip = self._pick(self.states_p.batch_size, self._parts())
        loss = kl(self.trigger.apply(self._subset(self.states_p, ip), delta), None, [0])
        if self.mu > 0:
            il = self._pick(self.states_later.batch_size, self._parts())
            inp = self.later_inputs if il is None else self.later_inputs[il]
            loss = loss + self.mu * kl(self.trigger.apply(self._subset(self.states_later, il), delta), inp,
                                       list(range(1, self.later_k + 1)))
        return loss

    def losses(self) -> dict[str, Tensor]:
        """One step: the inner attack, then the outer losses (with grad) and the logged diagnostics."""
        cfg = self.cfg
        out = super().losses()          # L_ER, L_pre and diagnostics of SACE (its "loss" is recomputed below)
        adversary = cfg.adv_steps > 0 and len(self.lam_hist) >= cfg.adv_warmup
        zero = out["L_ER"].new_zeros(())
        l_adv = l_trig = zero
        if adversary or cfg.adv_weight > 0 or cfg.adv_retain > 0:
            it = self._pick_targets()
            if adversary:
                hist = self.attack_step(it)
                out["adv_gain"] = zero + (hist[-1] - hist[0])
                out["adv_ll"] = zero + hist[-1]
            delta = self.trigger.states.detach()
            if cfg.adv_weight > 0:
                l_adv = self._triggered_erase(it, delta)
            if cfg.adv_retain > 0:
                l_trig = self._triggered_preservation(delta)
        lam = self.lam
        out["loss"] = out["L_ER"] + cfg.adv_weight * l_adv + lam * (out["L_pre"] + cfg.adv_retain * l_trig)
        out.update({"L_adv": l_adv, "L_pre_trig": l_trig, "lambda_pre": zero + lam})
        self._dual_update(float(out["L_pre"].detach()))
        return out

    def _dual_update(self, l_pre: float) -> None:
        """lambda_t <- clip(lambda_t * exp(dual_lr * clip(L_pre / pre_target - 1, -1, 1))) (module docstring)."""
        self.lam_hist.append(self.lam)
        cfg = self.cfg
        if cfg.pre_target is None or cfg.lambda_pre <= 0:
            return
        step = max(-1.0, min(1.0, l_pre / cfg.pre_target - 1.0))
        self.lam = min(max(self.lam * math.exp(cfg.dual_lr * step), cfg.lambda_pre), cfg.pre_max_scale * cfg.lambda_pre)

    # -- checkpoints, metadata, cost -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The objective's own training state (trigger, its optimiser, lambda_t): saved in checkpoints so that
        ``--resume`` continues exactly."""
        return {"trigger": self.trigger.states.detach().clone(), "adv_opt": self.adv_opt.state_dict(),
                "lam": self.lam, "lam_hist": list(self.lam_hist)}

    def load_state_dict(self, st: dict) -> None:
        with torch.no_grad():
            self.trigger.states.copy_(st["trigger"])
        self.adv_opt.load_state_dict(st["adv_opt"])
        self.lam = float(st["lam"])
        self.lam_hist = list(st["lam_hist"])

    def metadata(self, trainer: Trainer) -> dict:
        meta = super().metadata(trainer)
        meta["sace_config"] = jsonable(asdict(self.cfg))
        meta["robust"] = {"final_lambda_pre": round(self.lam, 4), "trigger_norm_bound": round(self.trigger.bound, 4),
                          "trigger_mode": self.trigger.mode,
                          "sace_tokens_per_step": SACEObjective.tokens_per_step(self, trainer)}
        return meta

    def tokens_per_step(self, trainer: Trainer | None = None) -> int:
        """SACE's tokens plus the inner attack's (``adv_steps + 1`` passes over the target prefixes up to
        ``adv_scales``) and the triggered erase and preservation passes."""
        n = super().tokens_per_step(trainer)
        m, cfg = self.model, self.cfg
        nt = min(cfg.batch_size or self.cond_t.batch_size, self.cond_t.batch_size) * self._parts()
        np_ = min(cfg.batch_size * self._parts() or self.cond_p.batch_size, self.cond_p.batch_size)
        off = m.schedule.offsets
        n += 2 * nt * off[self.adv_k + 1] * (cfg.adv_steps + 1) if cfg.adv_steps else 0
        n += 2 * nt * off[self.erase_k + 1] if cfg.adv_weight else 0
        if cfg.adv_retain:
            n += 2 * np_
            if self.mu > 0:
                n += 2 * np_ * off[self.later_k + 1]
        return n
