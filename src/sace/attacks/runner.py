"""One entry point for every attack: names, start prompts and configs, so that ``sace attack`` and the
benchmark run each attack against each target with the same budget, seeds and detector."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..concepts.judge import Judge
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..sampling import SamplingSettings
from .base import AttackResult, AttackSetup, AttackTarget
from .concept_vector import ConceptVectorConfig, concept_direction, concept_vector_attack
from .discrete import DiscreteConfig, discrete_attack
from .inversion import InversionConfig, inversion_attack
from .localise import localise as localise_attack
from .override import OverrideConfig, override_attack
from .relearn import RelearnConfig, relearn_attack
from .soft_prompt import SoftPromptConfig, soft_prompt_attack

#: attack key -> (title, default start: the concept prompts c* ("target") or their anchors c ("anchor"))
ATTACKS: dict[str, tuple[str, str]] = {
    "soft": ("soft-prompt", "target"),
    "vector": ("concept-vector", "anchor"),
    "discrete": ("discrete", "target"),
    "inversion": ("embedding inversion", "target"),
    "override": ("early-scale override", "target"),
    "relearn": ("relearning", "target"),
}
STARTS = ("target", "anchor")


@dataclass
class AttackConfigs:
    """The budget of every attack (the same for every target)."""

    soft: SoftPromptConfig = field(default_factory=SoftPromptConfig)
    vector: ConceptVectorConfig = field(default_factory=ConceptVectorConfig)
    discrete: DiscreteConfig = field(default_factory=DiscreteConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    override: OverrideConfig = field(default_factory=OverrideConfig)
    relearn: RelearnConfig = field(default_factory=RelearnConfig)

    def validate(self, num_scales: int | None = None) -> None:
        """Every attack's settings (``num_scales``: the model's, for the override's k)."""
        self.soft.validate()
        self.vector.validate()
        self.discrete.validate()
        self.inversion.validate()
        self.override.validate(num_scales)
        self.relearn.validate()


def parse_attacks(spec: str) -> list[tuple[str, str]]:
    """``"soft,vector,discrete"`` (``all``), each optionally ``name:start`` with start ``target`` or
    ``anchor`` -> ``[(name, start)]``.

    Raises:
        SaceError: unknown attack or start.
    """
    out = []
    for item in (x.strip().lower() for x in spec.split(",")):
        if not item:
            continue
        if item == "all":
            out += [(k, v[1]) for k, v in ATTACKS.items()]
            continue
        name, _, start = item.partition(":")
        if name not in ATTACKS:
            raise SaceError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)} or 'all'")
        start = start or ATTACKS[name][1]
        if start not in STARTS:
            raise SaceError(f"unknown start {start!r} for attack {name!r}; use {' or '.join(STARTS)}")
        out.append((name, start))
    if not out:
        raise SaceError("no attack given; use e.g. --attacks soft,vector,discrete")
    return list(dict.fromkeys(out))


def attack_title(name: str, start: str) -> str:
    title = ATTACKS[name][0]
    return title if start == ATTACKS[name][1] else f"{title} (from {start})"


def select_pairs(concept: ConceptSpec, n: int, start: str) -> tuple[list[str], list[str]]:
    """``n`` (start prompt, concept prompt) pairs spread evenly over the concept's target list, with distinct
    start prompts: start = the targets themselves (``"target"``) or their paired anchors (``"anchor"``).

    Raises:
        SaceError: ``n < 1`` or fewer distinct start prompts than ``n``.
    """
    if n < 1:
        raise SaceError(f"the number of attack prompts must be >= 1, got {n}")
    pool = concept.targets if start == "target" else concept.anchors
    m = len(pool)
    order = [(i * m) // n for i in range(n)] + list(range(m))
    picked: dict[str, str] = {}
    for i in order:
        if len(picked) == n:
            break
        picked.setdefault(pool[i], concept.targets[i])
    if len(picked) < n:
        raise SaceError(f"concept {concept.name!r} has only {len(picked)} distinct {start} prompts; "
                        f"use --n-prompts {len(picked)} or fewer")
    return list(picked), list(picked.values())


def not_applicable(target: AttackTarget, setup: AttackSetup, budget: dict, reason: str) -> AttackResult:
    """The row of an attack that does not apply to the model (ASR NaN, shown as ``n/a``; ``extra`` says why)."""
    n = len(setup.prompts) * len(setup.eval_seeds)
    return AttackResult("", target.name, budget, float("nan"), float("nan"), n, 0,
                        {"queries": 0, "gradient_steps": 0, "seconds": 0.0}, [], [], extra={"not_applicable": reason})


def run_attack(model, name: str, start: str, target: AttackTarget, concept: ConceptSpec, judge: Judge,
               n_prompts: int, eval_seeds: list[int], search_seeds: list[int], configs: AttackConfigs,
               settings=None, batch_size: int = 64, direction=None, localise: bool = False) -> AttackResult:
    """Run attack ``name`` from ``start`` prompts of ``concept`` against ``target``.

    ``direction``: a precomputed concept direction (the concept-vector attack computes it from the
    concept's target/anchor pairs otherwise; it depends on the text encoder only). ``localise``: for an
    attack that changes the condition and succeeds (ASR > 0), also measure its ASR with the attacked condition
    at subsets of the scales (:mod:`sace.attacks.localise`), stored as ``extra["localisation"]``.
    """
    prompts, concept_prompts = select_pairs(concept, n_prompts, start)
    setup = AttackSetup(prompts, concept_prompts, eval_seeds, search_seeds, judge,
                        settings or SamplingSettings(), batch_size)
    if name == "soft":
        res = soft_prompt_attack(model, target, setup, configs.soft)
    elif name == "vector":
        if direction is None:
            direction = concept_direction(model, concept.targets, concept.anchors)
        res = concept_vector_attack(model, target, setup, configs.vector, direction=direction)
    elif name == "discrete" and getattr(model, "class_conditional", False):
        res = not_applicable(target, setup, {"unit": "queries", "per_prompt": configs.discrete.queries},
                             "a class-conditional model has no words to search: its prompts are class labels")
    elif name == "discrete":
        res = discrete_attack(model, target, setup, concept.words or [concept.name], configs.discrete)
    elif name == "inversion":
        res = inversion_attack(model, target, setup, concept.words or [concept.name], configs.inversion)
    elif name == "override":
        res = override_attack(model, target, setup, configs.override)
    elif name == "relearn":
        res = relearn_attack(model, target, setup, concept.retain, configs.relearn)
    else:
        raise SaceError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    res.attack = attack_title(name, start)
    res.extra["start"] = start
    if localise and res.attacked is not None and res.asr > 0:
        res.extra["localisation"] = localise_attack(model, target, setup, res)
    return res
