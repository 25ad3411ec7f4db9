"""Early-scale override (white box on the sampler): the next-scale analogue of noise / image-channel attacks
such as TINA or the initial-noise attacks on erased diffusion models.

The first ``k`` scales are forced to the tokens the **original** model draws for the concept prompt c* (teacher
forcing of scales < k: the sampler's ``prefix``), and the attacked model samples scales >= k under the typed
prompt as usual. ``k = 0`` is the attacked model as it is (the same images, bit for bit). Best-of-N: for every
attempt N early-token draws of the original model (N seeds) are completed by the attacked model and an attacker
with the detector keeps the draw it scores highest (N queries per attempt).

What it means: an eraser that acts only on the scales < k (SACE's scale-0 gate: k = 1) cannot see this attack,
since its edited scales are overwritten; the override ASR at k = 1 is therefore an **upper bound on what any
scale-0-only eraser can resist** (and at k for any eraser confined to scales < k): if it brings the concept
back, the later scales still know how to draw it from an early layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..adapters import adapter_set
from ..errors import SaceError
from ..models.base import TokenPyramid
from ..sampling import make_generators, sample
from .base import AttackResult, AttackSetup, AttackTarget, Attempts, CurvePoint, Stopwatch, encode, finish

#: seed offset between the N early-token draws of one attempt (draw 0 uses the evaluation seed itself)
DRAW_STRIDE = 104_729


@dataclass
class OverrideConfig:
    """Early-scale override settings: the forced prefix lengths ``ks`` and the best-of-N draws."""

    ks: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    best_of: int = 4

    def validate(self, num_scales: int | None = None) -> None:
        if not self.ks:
            raise SaceError("the early-scale override needs at least one k (scales forced)")
        hi = num_scales if num_scales is not None else 64
        bad = [k for k in self.ks if not 0 <= int(k) < hi]
        if bad:
            raise SaceError(f"override k must be in 0..{hi - 1} (scales forced before the attacked model samples), "
                            f"got {bad}")
        if not 1 <= self.best_of <= 64:
            raise SaceError(f"override best-of-N must be in 1..64, got {self.best_of}")


def _sample_rows(model, conds, seeds: Sequence[int], settings: dict, batch: int,
                 prefix: TokenPyramid | None = None, uncond_fn=None, decode: bool = True):
    """Sample ``len(seeds)`` rows in chunks of ``batch``; ``conds`` is the encoded condition of every row."""
    pyrs, imgs = [], []
    for a in range(0, len(seeds), batch):
        rows = list(range(a, min(a + batch, len(seeds))))
        c = conds.index(rows)
        pre = prefix.index(torch.tensor(rows)) if prefix is not None else None
        unc = uncond_fn(len(rows)) if uncond_fn is not None else None
        res = sample(model, c, uncond=unc, generator=make_generators([seeds[i] for i in rows], device=model.device),
                     prefix=pre, decode=decode, keep_logits=False, **settings)
        pyrs.append(res.pyramid)
        if decode:
            imgs.append(res.images.float().cpu())
    return TokenPyramid.cat(pyrs), (torch.cat(imgs) if decode else None)


def override_attack(model, target: AttackTarget, setup: AttackSetup, cfg: OverrideConfig | None = None
                    ) -> AttackResult:
    """ASR of ``target`` with its first k scales forced to the original model's concept tokens, per k.

    Attempts are start prompt x evaluation seed (prompt-major) as for every attack; draw j of an attempt with
    evaluation seed s uses seed ``s + j * DRAW_STRIDE`` for both the original model's early tokens and the
    attacked model's completion. The result's ASR is the best-of-N ASR at the largest k; ``extra["per_k"]``
    holds ``{k: {"asr": draw 0 only, "asr_best_of": best of N}}``, and the curve is best-of-N ASR vs k.
    Raises:
        SaceError: k out of range for the model's schedule, bad best-of-N.
    """
    cfg = cfg or OverrideConfig()
    k_all = model.schedule.num_scales
    cfg.validate(k_all)
    ks = sorted({int(k) for k in cfg.ks})
    s = setup.settings.resolved(model)
    P, S, N = len(setup.prompts), len(setup.eval_seeds), cfg.best_of
    # rows: draw-major, then prompt, then seed (draw 0 = the evaluation seeds as they are)
    seeds = [sd + j * DRAW_STRIDE for j in range(N) for _ in range(P) for sd in setup.eval_seeds]
    starts = [p for _ in range(N) for p in setup.prompts for _ in range(S)]
    concepts = [c for _ in range(N) for c in setup.concept_prompts for _ in range(S)]
    unc = None if target.negative_prompt is None else (lambda n: target.uncond(model, n))
    clock = Stopwatch()
    per_k: dict[int, dict] = {}
    finals: dict[int, Attempts] = {}
    unattacked: Attempts | None = None
    with torch.no_grad():
        with clock:
            need = max(ks)
            early = None
            if need > 0:
                with adapter_set(model).disabled():
                    early, _ = _sample_rows(model, encode(model, concepts), seeds, s, setup.batch_size,
                                            decode=False)
            start_cond = encode(model, starts)
        for k in ks:
            with clock, target.active(model):
                _, imgs = _sample_rows(model, start_cond, seeds, s, setup.batch_size,
                                       prefix=early.prefix(k) if k > 0 else None, uncond_fn=unc)
            flags = setup.judge.flag(imgs).bool().cpu()
            scores = setup.judge.score(imgs).float().cpu()
            f3, s3 = flags.view(N, P * S), scores.view(N, P * S)
            pick = s3.argmax(0)                                                  # the draw the attacker keeps
            cols = torch.arange(P * S)
            best_flags = f3[pick, cols]
            i3 = imgs.view(N, P * S, *imgs.shape[1:])
            labels = [f"{p} (scales < {k} forced to the original model's tokens, best of {N})"
                      for p in setup.prompts for _ in range(S)]
            finals[k] = Attempts(i3[pick, cols], best_flags, s3[pick, cols], labels)
            per_k[k] = {"asr": float(f3[0].float().mean()), "asr_best_of": float(best_flags.float().mean())}
            if k == 0:
                unattacked = Attempts(i3[0], f3[0], s3[0], [p for p in setup.prompts for _ in range(S)])
    kmax = ks[-1]
    if unattacked is None:   # the attacked model as it is: draw 0 without forced scales
        with torch.no_grad(), target.active(model):
            _, imgs = _sample_rows(model, encode(model, starts[:P * S]), seeds[:P * S], s, setup.batch_size,
                                   uncond_fn=unc)
        unattacked = Attempts(imgs, setup.judge.flag(imgs).bool().cpu(), setup.judge.score(imgs).float().cpu(),
                              [p for p in setup.prompts for _ in range(S)])
    res = finish("early-scale override", target, {"unit": "forced scales", "per_prompt": kmax}, finals[kmax],
                 unattacked, {"queries": N * P * S * len(ks), "gradient_steps": 0, "seconds": round(clock.seconds, 2)},
                 [CurvePoint(k, per_k[k]["asr_best_of"]) for k in ks],
                 [{"start": p, "concept_prompt": c, "soft": f"scales < {kmax} forced, best of {N}"}
                  for p, c in zip(setup.prompts, setup.concept_prompts)],
                 per_k={str(k): v for k, v in per_k.items()}, best_of=N, config=asdict(cfg))
    return res
