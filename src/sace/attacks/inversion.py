"""Embedding inversion (white box): textual inversion / CCE for next-scale models.

Textual inversion (Gal et al., ICLR 2023) learns a new token ``S*`` from a few images of a concept; Pham et
al. ("Circumventing Concept Erasure Methods for Text-to-Image Generative Models", ICLR 2024, CCE) showed that
learning it *on the erased model* brings erased concepts back. Here the images are pyramids the **original**
model draws for the concept prompts c*, and the learned variables are new conditions the erased model reads:

    max_{S*}  mean_i  log p_attacked(pyramid_i | context_i + S*) / (number of token elements),

the teacher-forced next-scale likelihood over all scales with the deployment guidance and temperature (as
the soft-prompt attack's objective). ``S*`` is **one** short sequence of ``n_tokens`` text states shared by
every prompt (a placeholder word, :func:`sace.models.text.encode_placeholder`), spliced into the start
prompts *with the concept's words deleted* (``"a photo of a sneaker"`` -> ``"a photo"`` + ``S*``), so the
attack never types the concept. On a class-conditional model (VAR) ``S*`` is one class embedding (its
prompts have no words), started from the CFG null class's embedding. Each learned state is kept within the
largest norm of the model's own states (text: of the context prompts' states; VAR: of the class embeddings).
Zero steps give the context prompts as they are (VAR: the null class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from ..concepts.grammar import delete_words
from ..errors import SaceError
from ..models.base import Condition
from ..models.text import encode_placeholder
from .base import AttackResult, AttackSetup, AttackTarget, CurvePoint, Stopwatch, encode, finish, judge_attempts
from .soft_prompt import concept_pyramids, maximise_likelihood

#: the context used where deleting the concept's words leaves nothing ("a sneaker" -> "")
EMPTY_CONTEXT = "a photo"


@dataclass
class InversionConfig:
    """Embedding-inversion settings (the budget is ``steps`` gradient steps, for all start prompts together)."""

    steps: int = 60             # Adam steps on the shared placeholder states
    n_tokens: int = 4           # placeholder states (text families; a class-conditional model learns 1 embedding)
    lr: float = 0.05
    pyramids: int = 4           # concept pyramids per concept prompt, sampled by the original model
    checkpoints: int = 3        # evaluated points of the ASR-vs-steps curve (besides step 0)
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.steps <= 10_000:
            raise SaceError(f"embedding inversion: steps must be in 0..10000, got {self.steps}")
        if not 1 <= self.n_tokens <= 32:
            raise SaceError(f"embedding inversion: n_tokens must be in 1..32, got {self.n_tokens}")
        if not 1 <= self.pyramids <= 64:
            raise SaceError(f"embedding inversion: pyramids must be in 1..64, got {self.pyramids}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise SaceError(f"embedding inversion: lr must be a finite number > 0, got {self.lr}")
        if self.checkpoints < 1:
            raise SaceError("embedding inversion: checkpoints must be >= 1")


def context_prompts(prompts: Sequence[str], words: Sequence[str]) -> list[str]:
    """The start prompts with the concept's noun phrases deleted (``EMPTY_CONTEXT`` where nothing is left)."""
    return [delete_words(p, words) or EMPTY_CONTEXT for p in prompts]


class Placeholder:
    """The learned states ``S*`` and how they condition a batch of prompts.

    Text family: ``param (n, C)`` spliced into the encoded context prompts; class-conditional family:
    ``param (1, C)``, the class embedding of every row. :meth:`condition` is differentiable in :attr:`param`;
    :meth:`project_` keeps every state's norm within :attr:`bound`.
    """

    def __init__(self, model, contexts: Sequence[str], cfg: InversionConfig, generator: torch.Generator):
        self.class_conditional = bool(getattr(model, "class_conditional", False))
        if self.class_conditional:
            self.context = None
            null = model.continuous_condition(model.null_condition(model.encode_prompts(["0"])))
            init = null.tokens[0].detach().float().clone()                      # (1, C)
            # the largest norm of a class embedding (null row included)
            self.bound = float(model.transformer.class_emb.weight.detach().float().norm(dim=-1).max())
            self.rows = len(contexts)
        else:
            self.context = encode(model, contexts)
            x, mask = self.context.tokens.detach().float(), self.context.mask
            flat = x[mask]                                                       # (sum L_i, C)
            pick = torch.randint(0, flat.shape[0], (cfg.n_tokens,), generator=generator)
            init = flat[pick].clone()
            init = init + 0.01 * init.norm(dim=-1, keepdim=True) * torch.randn(init.shape, generator=generator)
            self.bound = float(flat.norm(dim=-1).max())
        self.param = init.to(model.device).requires_grad_(True)

    def condition(self) -> Condition:
        """The attacked condition of every start prompt (``B`` rows)."""
        if self.class_conditional:
            tok = self.param.unsqueeze(0).expand(self.rows, -1, -1)             # (B, 1, C)
            return Condition(tok, torch.ones(self.rows, 1, dtype=torch.bool, device=tok.device))
        return encode_placeholder(self.context.to(self.param.device), self.param)

    @torch.no_grad()
    def project_(self) -> None:
        norm = self.param.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.param.mul_(torch.where(norm > self.bound, self.bound / norm, torch.ones_like(norm)))

    def snapshot(self) -> Condition:
        with torch.no_grad():
            c = self.condition()
        return Condition(c.tokens.detach().clone(), c.mask.clone(), c.prompts, c.is_null)


def inversion_attack(model, target: AttackTarget, setup: AttackSetup, words: Sequence[str],
                     cfg: InversionConfig | None = None) -> AttackResult:
    """Learn ``S*`` against ``target`` from the original model's concept pyramids and prompt with it.

    Args:
        words: the concept's words and synonyms (deleted from the start prompts to make the context prompts).
    Steps: 1. the original model samples ``cfg.pyramids`` pyramids per concept prompt (search seeds extended
    deterministically, as the soft-prompt attack); 2. ``cfg.steps`` Adam steps on ``S*`` (one shared sequence);
    3. the contexts + ``S*`` at ``cfg.checkpoints`` step counts are judged on the evaluation seeds (the ASR-vs-steps
    curve; the last point is the result). The unattacked ASR is that of the start prompts as typed.
    Raises:
        SaceError: a bad config, or a non-finite objective.
    """
    cfg = cfg or InversionConfig()
    cfg.validate()
    s = setup.settings.resolved(model)
    p = len(setup.prompts)
    marks = sorted({0, *[round(cfg.steps * (i + 1) / cfg.checkpoints) for i in range(cfg.checkpoints)]})
    contexts = context_prompts(setup.prompts, words)
    gen = torch.Generator().manual_seed(cfg.seed)
    clock = Stopwatch()
    with clock:
        concept = encode(model, setup.concept_prompts)
        seeds = [setup.search_seeds[j % len(setup.search_seeds)] + 7919 * (j // len(setup.search_seeds))
                 for j in range(p * cfg.pyramids)]
        pyr, tf = concept_pyramids(model, concept, cfg.pyramids, seeds, s)
        ph = Placeholder(model, contexts, cfg, gen)
        history, snaps = maximise_likelihood(model, target, ph, pyr, tf, cfg.pyramids, cfg.steps, cfg.lr, s, marks,
                                             "embedding-inversion")
    n = 1 if ph.class_conditional else cfg.n_tokens
    what = "a learned class embedding" if ph.class_conditional else f"{n} learned states S*"
    labels = [what if ph.class_conditional else f"{c} + S*" for c in contexts]
    keys = [str(i) for i in range(p)]
    curve, final = [], None
    for step in marks:
        cond = snaps[step]
        final = judge_attempts(model, target, setup, lambda ks, c=cond: c.index([int(k) for k in ks]), keys, labels)
        curve.append(CurvePoint(step, final.asr))
    unattacked = judge_attempts(model, target, setup, lambda ks: encode(model, ks), setup.prompts)
    found = [{"start": pr, "context": ("" if ph.class_conditional else c), "soft": what}
             for pr, c in zip(setup.prompts, contexts)]
    last = snaps[marks[-1]]
    res = finish("embedding inversion", target, {"unit": "gradient steps", "per_prompt": cfg.steps}, final,
                 unattacked, {"queries": 0, "gradient_steps": cfg.steps, "seconds": round(clock.seconds, 2)}, curve,
                 found, objective=history, config=asdict(cfg), placeholder_norm=float(ph.param.detach().norm(dim=-1)
                                                                                     .mean()))
    res.attacked = lambda idx: last.index(list(idx))
    return res
