"""Soft-prompt attack (white box): the UnlearnDiffAtk / P4D idea for next-scale models.

UnlearnDiffAtk (Zhang et al., ECCV 2024) and P4D (Chin et al., ICML 2024) optimise prompt tokens so that
the erased diffusion model denoises towards images of the concept. A next-scale model has an exact
likelihood, so the objective here is direct: the attacked model's teacher-forced log-likelihood, over
**all scales**, of concept pyramids that the **original** model samples under the concept prompt c*:

    max_{delta}  mean_i  log p_attacked(pyramid_i | c(delta)) / (number of token elements),

computed with the deployment guidance and temperature (the distribution images are drawn from). The free
variables ``delta`` are either ``n_tokens`` continuous token states inserted before the prompt's last
token (``mode="insert"``; each kept within the largest token norm of its prompt), or an additive change of
every text state within a norm ball ``||delta_t|| <= radius * ||x_t||`` (``mode="ball"``). Optimised with
Adam; then images are generated from the optimised condition and scored by the detector. On a
class-conditional model (VAR) the free variable is the class embedding (:func:`~.base.encode`), always in a
ball around the start class's embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor

from ..adapters import adapter_set
from ..erasure.losses import sequence_log_likelihood
from ..errors import SaceError
from ..models.base import Condition, TokenPyramid
from ..models.text import encode_placeholder
from ..sampling import make_generators, sample
from .base import AttackResult, AttackSetup, AttackTarget, CurvePoint, Stopwatch, encode, finish, judge_attempts

MODES = ("insert", "ball")


@dataclass
class SoftPromptConfig:
    """Soft-prompt attack settings (the budget is ``steps`` gradient steps per start prompt)."""

    mode: str = "insert"        # "insert": new token states before the last token; "ball": perturb every state
    n_tokens: int = 4           # inserted token states (insert mode)
    radius: float = 0.5         # ball mode: ||delta_t|| <= radius * ||x_t||
    steps: int = 30             # Adam steps
    lr: float = 0.05            # Adam learning rate (token states of MiniLM/T5 have norms of ~5-15)
    pyramids: int = 4           # concept pyramids per start prompt, sampled by the original model
    checkpoints: int = 4        # evaluated points of the ASR-vs-steps curve (besides step 0)
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise SaceError(f"unknown soft-prompt mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.steps < 0 or self.pyramids < 1 or (self.mode == "insert" and self.n_tokens < 1):
            raise SaceError("soft-prompt attack: steps >= 0, pyramids >= 1 and n_tokens >= 1 are required")
        if not self.lr > 0 or (self.mode == "ball" and not self.radius > 0):
            raise SaceError("soft-prompt attack: lr and radius must be > 0")


class SoftCondition:
    """Trainable token states on top of a fixed condition ``base`` (B rows).

    ``insert``: ``soft (B, n, C)`` spliced in before each row's last real token (length L_i -> L_i + n);
    ``ball``: ``delta (B, T, C)`` added to the real tokens. :meth:`condition` is differentiable in the
    parameter; :meth:`project_` enforces the norm constraint in place after every step.
    """

    def __init__(self, base: Condition, cfg: SoftPromptConfig, generator: torch.Generator | None = None,
                 max_len: int | None = None):
        self.base, self.cfg = base, cfg
        x, mask = base.tokens.detach(), base.mask
        lens = base.lengths
        #: per-row bound of an inserted token's norm: the largest real token norm of the prompt
        self.row_norm = (x.norm(dim=-1) * mask).amax(1)
        if cfg.mode == "insert":
            if max_len is not None and int(lens.max()) + cfg.n_tokens > max_len:
                raise SaceError(f"{cfg.n_tokens} soft tokens do not fit the model's text length {max_len}")
            # start from copies of the prompt's own states (random positions, seeded), slightly perturbed
            rows = []
            for i in range(base.batch_size):
                pick = torch.randint(0, int(lens[i]), (cfg.n_tokens,), generator=generator)
                rows.append(x[i, pick])
            init = torch.stack(rows)
            init = init + 0.01 * init.norm(dim=-1, keepdim=True) * torch.randn(init.shape, generator=generator)
            self.param = init.clone().requires_grad_(True)
        else:
            self.param = torch.zeros_like(x).requires_grad_(True)

    def condition(self) -> Condition:
        """The attacked condition; ``tokens`` depend differentiably on :attr:`param`."""
        x, mask = self.base.tokens.detach(), self.base.mask
        if self.cfg.mode == "ball":
            return Condition(x + self.param * mask[..., None], mask, self.base.prompts, self.base.is_null)
        return encode_placeholder(Condition(x, mask, self.base.prompts, self.base.is_null), self.param)

    @torch.no_grad()
    def project_(self) -> None:
        p = self.param
        if self.cfg.mode == "ball":
            bound = self.cfg.radius * self.base.tokens.norm(dim=-1, keepdim=True)
        else:
            bound = self.row_norm[:, None, None].expand(-1, p.shape[1], 1)
        norm = p.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        p.mul_(torch.where(norm > bound, bound / norm, torch.ones_like(norm)))

    def snapshot(self) -> Condition:
        """A detached copy of the current attacked condition."""
        with torch.no_grad():
            c = self.condition()
        return Condition(c.tokens.detach().clone(), c.mask.clone(), c.prompts, c.is_null)


@contextmanager
def frozen(model):
    """Model parameters without gradients for the duration (the attack differentiates the condition only)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@torch.no_grad()
def concept_pyramids(model, concept: Condition, per_prompt: int, seeds: Sequence[int],
                     settings: dict) -> tuple[TokenPyramid, Tensor]:
    """Pyramids the **original** model (adapters off) samples under the concept condition: ``per_prompt``
    per row (rows ``i*per_prompt + m``), seeded per row; returns (pyramid, teacher-forcing inputs)."""
    if len(seeds) < concept.batch_size * per_prompt:
        raise SaceError(f"{len(seeds)} seeds for {concept.batch_size * per_prompt} concept pyramids")
    rep = concept.repeat_interleave(per_prompt)
    with adapter_set(model).disabled():
        res = sample(model, rep, generator=make_generators(list(seeds)[: rep.batch_size], device=model.device),
                     decode=False, keep_logits=False, **settings)
    return res.pyramid, model.tf_inputs(res.pyramid, mode="sampling")


def optimise_soft_condition(model, target: AttackTarget, start: Condition, pyramid: TokenPyramid, tf: Tensor,
                            cfg: SoftPromptConfig, settings: dict, record_at: Sequence[int] = ()
                            ) -> tuple[SoftCondition, list[float], dict[int, Condition]]:
    """Maximise the target's teacher-forced log-likelihood of ``pyramid`` (``start.batch_size * cfg.pyramids``
    rows, prompt-major) over the soft variables of ``start``.

    Args:
        settings: resolved sampling settings; ``guidance`` and ``temperature`` define the likelihood.
        record_at: step counts whose attacked condition is returned (0 = before any step).
    Returns:
        (the soft condition, objective per step *before* that step's update, i.e. ``steps + 1`` values with
        the final one last, ``{step: condition}`` snapshots).
    Raises:
        SaceError: pyramid rows do not match ``start`` x ``cfg.pyramids``; a non-finite objective.
    """
    cfg.validate()
    if pyramid.batch_size != start.batch_size * cfg.pyramids:
        raise SaceError(f"{pyramid.batch_size} pyramids for {start.batch_size} prompts x {cfg.pyramids}")
    gen = torch.Generator().manual_seed(cfg.seed)
    max_len = getattr(getattr(getattr(model, "transformer", None), "cfg", None), "text_maxlen", None)
    soft = SoftCondition(start.to(model.device), cfg, gen, max_len)
    history, snaps = maximise_likelihood(model, target, soft, pyramid, tf, cfg.pyramids, cfg.steps, cfg.lr, settings,
                                         record_at, "soft-prompt")
    return soft, history, snaps


def maximise_likelihood(model, target: AttackTarget, var, pyramid: TokenPyramid, tf: Tensor, per_row: int,
                        steps: int, lr: float, settings: dict, record_at: Sequence[int] = (), name: str = "attack"
                        ) -> tuple[list[float], dict[int, Condition]]:
    """The white-box attacks' one optimisation loop: Adam on ``var.param`` maximising the target's teacher-forced
    log-likelihood of ``pyramid`` under ``var.condition()`` (each row repeated ``per_row`` times), projecting
    after every step (``var.project_()``).

    Args:
        var: the free variables (:class:`SoftCondition`, the inversion's placeholder): ``param``,
            ``condition()``, ``snapshot()``, ``project_()``.
        settings: resolved sampling settings; ``guidance`` and ``temperature`` define the likelihood.
        record_at: step counts whose condition is returned (0 = before any step). name: for the error message.
    Returns:
        (objective before each step and after the last, ``steps + 1`` values; ``{step: condition}``).
    Raises:
        SaceError: a non-finite objective.
    """
    opt = torch.optim.Adam([var.param], lr=lr)
    unc = target.uncond(model, pyramid.batch_size)
    history: list[float] = []
    snaps: dict[int, Condition] = {}
    with frozen(model), target.active(model):
        for step in range(steps + 1):
            if step in record_at:
                snaps[step] = var.snapshot()
            cond = var.condition().repeat_interleave(per_row)
            z = model.forward_teacher_forced(cond, tf, uncond=unc, guidance=settings["guidance"],
                                             temperature=settings["temperature"])
            ll = sequence_log_likelihood(z, pyramid).mean()
            if not torch.isfinite(ll):
                raise SaceError(f"{name} objective became non-finite at step {step}; lower the lr")
            history.append(float(ll.detach()))
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            (-ll).backward()
            opt.step()
            var.project_()
    return history, snaps


def soft_prompt_attack(model, target: AttackTarget, setup: AttackSetup,
                       cfg: SoftPromptConfig | None = None) -> AttackResult:
    """Run the soft-prompt attack from ``setup.prompts`` towards ``setup.concept_prompts`` against ``target``.

    Steps: 1. the original model samples ``cfg.pyramids`` concept pyramids per concept prompt (search seeds
    extended deterministically); 2. the soft variables of every start prompt are optimised jointly (one
    batch) for ``cfg.steps`` Adam steps; 3. the attacked conditions at ``cfg.checkpoints`` step counts are
    judged on the evaluation seeds (the ASR-vs-steps curve; the last point is the result).
    """
    cfg = cfg or SoftPromptConfig()
    cfg.validate()
    class_conditional = getattr(model, "class_conditional", False)
    if class_conditional and cfg.mode == "insert":
        # one class embedding per row and no token sequence to insert into: optimise the embedding in a ball
        cfg = replace(cfg, mode="ball")
    s = setup.settings.resolved(model)
    p = len(setup.prompts)
    marks = sorted({0, *[round(cfg.steps * (i + 1) / max(1, cfg.checkpoints)) for i in range(cfg.checkpoints)]})
    clock = Stopwatch()
    with clock:
        start = encode(model, setup.prompts)
        concept = encode(model, setup.concept_prompts)
        seeds = [setup.search_seeds[j % len(setup.search_seeds)] + 7919 * (j // len(setup.search_seeds))
                 for j in range(p * cfg.pyramids)]
        pyr, tf = concept_pyramids(model, concept, cfg.pyramids, seeds, s)
        _, history, snaps = optimise_soft_condition(model, target, start, pyr, tf, cfg, s, record_at=marks)
    keys = [str(i) for i in range(p)]
    states = "class embedding" if class_conditional else "text states"
    suffix = f" + {cfg.n_tokens} soft tokens" if cfg.mode == "insert" else f" ({states}, radius {cfg.radius})"
    labels = [pr + suffix for pr in setup.prompts]
    curve, final = [], None
    for step in marks:
        cond = snaps[step]
        att = judge_attempts(model, target, setup, lambda ks, c=cond: c.index([int(k) for k in ks]), keys, labels)
        curve.append(CurvePoint(step, att.asr))
        final = att
    unattacked = judge_attempts(model, target, setup, lambda ks: encode(model, ks), setup.prompts)
    found = [{"start": pr, "concept_prompt": cp, "soft": suffix.strip(" +()")}
             for pr, cp in zip(setup.prompts, setup.concept_prompts)]
    res = finish("soft-prompt", target, {"unit": "gradient steps", "per_prompt": cfg.steps}, final, unattacked,
                 {"queries": 0, "gradient_steps": cfg.steps, "seconds": round(clock.seconds, 2)}, curve, found,
                 objective=history, config=asdict(cfg))
    last = snaps[marks[-1]]
    res.attacked = lambda idx: last.index(list(idx))
    return res
