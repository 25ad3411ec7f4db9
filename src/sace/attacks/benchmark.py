"""``sace attack``: every requested attack against every method, per concept, in one table.

Methods are rows of the method catalogue (:mod:`sace.erasure.catalogue`): the original model, the trained
methods (SACE, S-VARE, ESD, the ablations; trained inside the run and saved to ``OUT/adapters/CONCEPT-METHOD``,
reused when the folder already exists, so a rerun only attacks), the negative prompt; and adapters given as
folders. Every (attack, method) pair gets the same start prompts, search seeds, evaluation seeds, judge
(:func:`sace.domains.judge_for`) and budget.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import domains
from ..adapters import detach_adapters, load_adapter, only_adapters
from ..concepts.judge import NoDetector, judge_line
from ..concepts.spec import ConceptSpec
from ..erasure import catalogue
from ..erasure.trainer import write_adapter_folder
from ..errors import SaceError
from ..fingerprint import digest, transformer_hash
from ..io import write_json
from ..sampling import SamplingSettings
from ..validation import count, finite, path_name
from ..validation import seed as check_seed
from .base import AttackResult, AttackTarget
from .concept_vector import concept_direction
from .report import write_outputs
from .runner import ATTACKS, AttackConfigs, attack_title, run_attack


def attackable() -> list[str]:
    """The catalogue rows an attack can target: the original model, the trained methods and the training-free
    ones that only change the guidance's unconditional side (a row that replaces the prompt's conditions,
    such as the scale-0 swap, would override the conditions the attacks optimise)."""
    return [k for k, m in catalogue.METHODS.items() if m.conditions is None]


@dataclass
class AttackRequest:
    """What ``sace attack`` was asked to do.

    Attributes:
        concepts: concept names (fashion: class keys; other models: presets). anchor: anchor for every concept
            (default: the model's).
        methods: keys of :func:`attackable` catalogue rows; ``adapters``: extra adapter folders (attacked for
            the concept in their metadata, or the first concept).
        attacks: ``[(name, start)]`` (see :func:`~sace.attacks.runner.parse_attacks`).
        n_prompts, eval_seeds, search_seeds: attempts = n_prompts x eval_seeds per attack and method.
        sanity: also run the soft-prompt attack from the anchor prompts against the original model.
        localise: for every condition attack that succeeds, the ASR with the attacked condition at subsets of
            the scales (:mod:`sace.attacks.localise`).
    """

    concepts: list[str]
    anchor: str | None = None
    methods: list[str] = field(default_factory=lambda: ["original", "sace", "svare", "esd"])
    adapters: list[str] = field(default_factory=list)
    attacks: list[tuple[str, str]] = field(default_factory=lambda: [(k, v[1]) for k, v in ATTACKS.items()])
    n_prompts: int = 4
    eval_seeds: int = 8
    search_seeds: int = 4
    seed: int = 0
    detector: str = "auto"
    configs: AttackConfigs = field(default_factory=AttackConfigs)
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    sanity: bool = True
    sace_steps: int | None = None
    baseline_steps: int | None = None
    batch_size: int = 64
    localise: bool = True

    def validate(self, num_scales: int | None = None) -> None:
        if not self.concepts:
            raise SaceError("give at least one concept (--concept sneaker,trouser)")
        bad = [m for m in self.methods if m not in catalogue.METHODS]
        if bad:
            raise SaceError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(attackable())}")
        fixed = [m for m in self.methods if m not in attackable()]
        if fixed:
            raise SaceError(f"{', '.join(fixed)} replace(s) the prompt's conditions, which the attacks optimise: "
                            f"not attackable; choose from {', '.join(attackable())}")
        for opt, n in (("--n-prompts", self.n_prompts), ("--eval-seeds", self.eval_seeds),
                       ("--search-seeds", self.search_seeds)):
            count(opt, n)
        check_seed("--seed", self.seed)
        # the evaluation seeds are seed + 1000 .. seed + 1000 + eval_seeds - 1 (search seeds start at seed)
        check_seed("--seed + 1000 + --eval-seeds - 1", self.seed + 1000 + self.eval_seeds - 1)
        check_seed("--seed + --search-seeds - 1", self.seed + self.search_seeds - 1)
        for eta in self.configs.vector.etas:
            finite("--etas", eta)
        for steps, opt in ((self.sace_steps, "--sace-steps"), (self.baseline_steps, "--baseline-steps")):
            if steps is not None and steps < 1:
                raise SaceError(f"{opt} must be an integer >= 1, got {steps}")
        self.configs.validate(num_scales)


def _training(model, key: str, concept: ConceptSpec, req: AttackRequest):
    """The config the catalogue's method ``key`` is trained with here, and the record that tells whether an
    adapter folder was trained for it (method, concept definition incl. its anchor, steps, seed, the whole
    config, the base weights): a folder trained with other ``--sace-steps`` / ``--anchor`` is never reused."""
    entry = catalogue.get(key)
    steps = req.baseline_steps if entry.baseline else req.sace_steps
    cfg = entry.make_config(model, seed=req.seed, steps=steps or None)
    record = {"method": key, "concept": concept.name, "anchor": concept.anchor_name,
              "concept_digest": digest(concept.to_dict()), "steps": getattr(cfg, "steps", None), "seed": req.seed,
              "config_digest": digest(asdict(cfg)), "base": transformer_hash(model)}
    return entry, cfg, record


def _train(model, key: str, concept: ConceptSpec, req: AttackRequest, folder: Path) -> None:
    """Train the catalogue's method ``key`` for ``concept`` and save it to ``folder`` (then detach it)."""
    entry, cfg, record = _training(model, key, concept, req)
    res = entry.train(model, concept, cfg, progress=True, name=f"train_{key}")
    write_adapter_folder(res, folder, model, extra={"method": entry.label, "concept": concept.name,
                                                    "attack_training": record})
    detach_adapters(model, res.adapter.config.name)


def _trained_for(folder: Path) -> dict | None:
    """The ``attack_training`` record of an adapter folder trained by ``sace attack`` (``None``: none, or
    unreadable: the folder is retrained)."""
    try:
        meta = json.loads((folder / "adapter.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("attack_training") if isinstance(meta, dict) else None


def build_targets(model, concept: ConceptSpec, req: AttackRequest, out: Path, given: list[str]) -> list[AttackTarget]:
    """The attacked methods of one concept (adapters attached to ``model`` under ``atk_*`` names)."""
    targets = []
    for key in req.methods:
        entry = catalogue.get(key)
        if entry.negative_prompt is not None:
            targets.append(AttackTarget(entry.label, negative_prompt=entry.negative_prompt(concept)))
        elif not entry.trains:
            targets.append(AttackTarget(entry.label))
        else:
            folder = out / "adapters" / f"{path_name(concept.name)}-{key}"
            have = _trained_for(folder)
            if have != _training(model, key, concept, req)[2]:
                if have is not None:
                    print(f"{folder}: trained with other settings (steps, anchor, seed or base weights); "
                          f"retraining", flush=True)
                only_adapters(model, [])        # train on the original model, not on a method loaded before
                _train(model, key, concept, req, folder)
            ad = load_adapter(model, folder, name=f"atk_{key}")
            targets.append(AttackTarget(entry.label, [f"atk_{key}"], cost={
                "train_seconds": ad.metadata.get("train_seconds"), "steps": ad.metadata.get("steps"),
                "adapter": str(folder)}))
    for i, folder in enumerate(given):
        ad = load_adapter(model, folder, name=f"atk_given{i}")
        label = f"{ad.metadata.get('method', 'adapter')} ({Path(folder).name})"
        targets.append(AttackTarget(label, [f"atk_given{i}"], cost={"train_seconds": ad.metadata.get("train_seconds"),
                                                                    "adapter": str(folder)}))
    only_adapters(model, [])
    return targets


def _given_for(req: AttackRequest) -> dict[str, list[str]]:
    """Given adapter folders per concept (their metadata's concept -- a name, or the concept definition
    ``sace erase`` writes, whose ``name`` counts -- else the first concept)."""
    out: dict[str, list[str]] = {c: [] for c in req.concepts}
    for f in req.adapters:
        try:
            meta = json.loads((Path(f) / "adapter.json").read_text())
        except (OSError, ValueError):
            raise SaceError(f"{f} is not an adapter folder (no readable adapter.json)") from None
        c = meta.get("concept") if isinstance(meta, dict) else None
        if isinstance(c, dict):
            c = c.get("name")
        out[c if isinstance(c, str) and c in out else req.concepts[0]].append(str(f))
    return out


#: the hints of the concept resolver that name options ``sace attack`` does not have
_OTHER_HINTS = re.compile(r",? or give --target PROMPT \(repeatable\) and --anchor PHRASE, or --concept-file"
                          r"|\s*\(or give (--concept-file / )?--target prompts\)")


def _resolve(model, name: str, anchor: str | None) -> ConceptSpec:
    """A concept of ``sace attack`` (a class key or preset), its errors without the ``--target`` /
    ``--concept-file`` hints of ``sace erase``.

    Raises:
        SaceError: an unknown concept (one line, with what ``sace attack`` accepts instead).
    """
    try:
        return domains.resolve_concept(model, name, anchor=anchor)
    except SaceError as e:
        msg = _OTHER_HINTS.sub("", str(e))
        if msg != str(e):
            msg += "; sace attack takes one of these names (it has no --target or --concept-file)"
        raise SaceError(msg) from None


def check_given(model, folders: list[str]) -> None:
    """Load and detach every given adapter folder before any training or attack: its model, base weights,
    tensors (NaN/inf) and gate are checked by :func:`sace.adapters.load_adapter`.

    Raises:
        SaceError / CheckpointError: the first folder that does not fit ``model``.
    """
    for i, folder in enumerate(folders):
        load_adapter(model, folder, name=f"atk_check{i}")
        detach_adapters(model, f"atk_check{i}")


@dataclass
class AttackBenchmark:
    """What :func:`run_attack_benchmark` measured: per concept the :class:`AttackResult` rows (attack x
    method), the sanity runs, and ``metrics`` (the ``metrics.json`` content). Written by
    :func:`write_attack_benchmark`."""

    results: dict[str, list[AttackResult]]
    sanity: dict[str, AttackResult]
    metrics: dict
    judges: dict[str, str] = field(default_factory=dict)
    """Per concept, the judge's line (:func:`~sace.concepts.judge.judge_line`)."""


def run_attack_benchmark(model, req: AttackRequest, out_dir: str | os.PathLike, progress: bool = True
                         ) -> AttackBenchmark:
    """Everything ``sace attack`` measures. ``out_dir`` holds the methods' adapters (trained once, reused by
    later runs: ``OUT/adapters``) and ``metrics.partial.json`` after each concept (what is done survives a
    failure); the outputs are written by :func:`write_attack_benchmark`."""
    req.validate(model.schedule.num_scales)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_seeds = [req.seed + 1000 + i for i in range(req.eval_seeds)]
    search_seeds = [req.seed + i for i in range(req.search_seeds)]
    given = _given_for(req)
    check_given(model, req.adapters)
    # every concept resolved before the first is attacked: an unknown second one fails in seconds
    concepts = {cname: _resolve(model, cname, req.anchor) for cname in req.concepts}
    results: dict[str, list[AttackResult]] = {}
    sanity: dict[str, AttackResult] = {}
    t0 = time.perf_counter()
    judges: dict[str, str] = {}
    attacked: dict[str, dict] = {}
    for cname in req.concepts:
        concept = concepts[cname]
        try:
            judge = domains.judge_for(model, concept, req.detector)
        except NoDetector as e:
            raise SaceError(f"{e}; an attack needs a judge: give --detector "
                            f"({', '.join(domains.detector_choices()[1:-1])})") from None
        judges[concept.name] = judge_line(judge)
        if progress:
            print(f"{concept.name}: {judges[concept.name]}", flush=True)
        targets = build_targets(model, concept, req, out, given.get(cname, []))
        # which adapter folder each row label stands for (`sace export` finds an adapter's rows by its folder)
        attacked[concept.name] = {t.name: t.cost.get("adapter") for t in targets}
        direction = concept_direction(model, concept.targets, concept.anchors)
        rows = []
        for name, start in req.attacks:
            for tg in targets:
                if progress:
                    print(f"[{time.perf_counter() - t0:7.1f} s] {concept.name}: {attack_title(name, start)} "
                          f"against {tg.name}", flush=True)
                rows.append(run_attack(model, name, start, tg, concept, judge, req.n_prompts, eval_seeds,
                                       search_seeds, req.configs, req.settings, req.batch_size, direction,
                                       localise=req.localise))
        if req.sanity:
            orig = next((t for t in targets if t.name == "original"), AttackTarget("original"))
            sanity[concept.name] = run_attack(model, "soft", "anchor", orig, concept, judge, req.n_prompts,
                                              eval_seeds, search_seeds, req.configs, req.settings, req.batch_size)
        results[concept.name] = rows
        detach_adapters(model)
        # what is done so far survives a later failure (the final write below replaces it)
        write_json(out / "metrics.partial.json", {c: [r.to_dict() for r in rs] for c, rs in results.items()})
    report = {
        "model": model.name, "detector": req.detector, "judges": judges, "settings": req.settings.resolved(model),
        "n_prompts": req.n_prompts, "eval_seeds": eval_seeds, "search_seeds": search_seeds,
        "budgets": asdict(req.configs), "seconds": round(time.perf_counter() - t0, 1),
        "concepts": {c: [r.to_dict() for r in rs] for c, rs in results.items()},
        "sanity": {c: r.to_dict() for c, r in sanity.items()}, "adapters": attacked,
    }
    return AttackBenchmark(results, sanity, report, judges)


def write_attack_benchmark(bench: AttackBenchmark, out_dir: str | os.PathLike) -> str:
    """Write ``metrics.json`` (atomically), ``table.md``, ``report.html``, curves and grids into ``out_dir``
    (replacing ``metrics.partial.json``); returns the ASR table (markdown)."""
    out = Path(out_dir)
    write_json(out / "metrics.json", bench.metrics)
    table = write_outputs(bench.results, bench.sanity, bench.metrics, out)
    (out / "metrics.partial.json").unlink(missing_ok=True)
    return table
