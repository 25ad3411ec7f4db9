"""Attack localisation: at which scales does an attacked condition bring the concept back?

For an attack that changes the condition (soft prompt, concept vector, discrete prompt, embedding inversion)
the attacked condition is applied at a subset S of the scales and the clean condition (the start prompt's own
encoding) at the others, through the one sampler's per-scale conditions (the mechanism of ISSA's prompt switch
and of the scale-0 prompt-swap baseline). The ASR is measured on the attack's evaluation seeds for

* ``scale 0 only`` (S = {0}), ``scales >= 1`` (S = {1..K-1}),
* ``up to k`` (S = {0..k}) for k = 0..K-1; ``up to K-1`` is the unlocalised attack (the same images).

Reading: if ``scales >= 1`` keeps most of the ASR, the concept comes back at scales an edit of scale 0 never
sees; if ``up to k`` reaches the full ASR at small k, the attack acts through the early scales only.
"""

from __future__ import annotations

from ..errors import SaceError
from ..models.base import Condition
from .base import AttackResult, AttackSetup, AttackTarget, encode, judge_attempts


def scale_sets(num_scales: int) -> dict[str, list[int]]:
    """The localisation modes as ``{label: scales that get the attacked condition}`` (``up to k`` in k order)."""
    sets = {"scale 0 only": [0], "scales >= 1": list(range(1, num_scales))}
    sets.update({f"up to {k}": list(range(k + 1)) for k in range(num_scales)})
    return sets


def localised_conditions(attacked: Condition, clean: Condition, scales: list[int], num_scales: int
                         ) -> list[Condition]:
    """Per-scale conditions: ``attacked`` at ``scales``, ``clean`` elsewhere (the same objects repeat, so the
    sampler prepares each once)."""
    chosen = set(scales)
    return [attacked if k in chosen else clean for k in range(num_scales)]


def localise(model, target: AttackTarget, setup: AttackSetup, result: AttackResult) -> dict:
    """ASR of ``result``'s attacked condition per localisation mode (:func:`scale_sets`).

    Returns:
        ``{"asr": {label: ASR}, "up_to": [ASR at k = 0..K-1], "scale0_only": ..., "from_scale1": ...,
        "attempts": n}`` (ASR in [0, 1] over start prompts x evaluation seeds).
    Raises:
        SaceError: ``result`` holds no attacked condition (an attack that does not change the condition).
    """
    if result.attacked is None:
        raise SaceError(f"attack {result.attack!r} changes no condition; localisation does not apply")
    k_all = model.schedule.num_scales
    keys = [str(i) for i in range(len(setup.prompts))]
    out: dict[str, float] = {}
    for label, scales in scale_sets(k_all).items():
        def cond_fn(ks, scales=scales):
            idx = [int(k) for k in ks]
            return localised_conditions(result.attacked(idx), encode(model, [setup.prompts[i] for i in idx]),
                                        scales, k_all)
        out[label] = judge_attempts(model, target, setup, cond_fn, keys).asr
    return {"asr": out, "up_to": [out[f"up to {k}"] for k in range(k_all)], "scale0_only": out["scale 0 only"],
            "from_scale1": out["scales >= 1"], "attempts": len(keys) * len(setup.eval_seeds)}
