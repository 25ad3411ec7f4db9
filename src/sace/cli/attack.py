"""``sace attack``: soft-prompt, concept-vector, discrete, embedding-inversion, early-scale-override and
relearning attacks on erased models, one ASR table (plus the localisation of every successful condition
attack)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .. import validation as v
from ..attacks.benchmark import AttackRequest, attackable, run_attack_benchmark, write_attack_benchmark
from ..attacks.concept_vector import ConceptVectorConfig
from ..attacks.discrete import DiscreteConfig
from ..attacks.inversion import InversionConfig
from ..attacks.override import OverrideConfig
from ..attacks.relearn import RelearnConfig
from ..attacks.runner import AttackConfigs, parse_attacks
from ..attacks.soft_prompt import SoftPromptConfig
from ..errors import SaceError
from ..folders import on_interrupt, open_output
from .common import adapter_paths, check_adapter_folders, comma_list, console, detector_help, load, output_record
from .options import SAMPLING_NO_TOP, AdapterOpt, DeviceOpt, ForceOpt, ModelOpt, Sampling, sampling_options


@sampling_options
def attack(
    ctx: typer.Context,
    concept: Annotated[str, typer.Option(help="Concept(s) to attack, comma list (fashion: class keys, e.g. "
                                              "sneaker,trouser; other models: presets, e.g. nudity).")],
    anchor: Annotated[str | None, typer.Option(help="Anchor for every concept (default: the model's).")] = None,
    methods: Annotated[str, typer.Option(help="Comma list of " + ", ".join(attackable()) + " (trained methods "
                                              "are trained here and saved to OUT/adapters, reused on a rerun).")
                       ] = "original,sace,svare,esd",
    adapter: AdapterOpt = None,
    attacks: Annotated[str, typer.Option(help="Comma list of soft, vector, discrete, inversion, override, relearn "
                                              "or all; NAME:anchor or NAME:target picks the start prompts "
                                              "(defaults: vector from the anchors, the others from the concept "
                                              "prompts).")] = "all",
    n_prompts: Annotated[int, typer.Option("--n-prompts", help="Start prompts per attack.")] = 4,
    eval_seeds: Annotated[int, typer.Option(help="Evaluation seeds per start prompt (ASR attempts).")] = 8,
    search_seeds: Annotated[int, typer.Option(help="Seeds each black-box query is scored on.")] = 4,
    soft_steps: Annotated[int, typer.Option(help="Soft-prompt: Adam steps per start prompt.")] = 30,
    soft_tokens: Annotated[int, typer.Option(help="Soft-prompt: inserted token states.")] = 4,
    soft_mode: Annotated[str, typer.Option(help="Soft-prompt: insert (new token states) or ball (perturb "
                                                "the text states within --soft-radius).")] = "insert",
    soft_radius: Annotated[float, typer.Option(help="Soft-prompt ball radius, relative to each state's norm.")
                           ] = 0.5,
    etas: Annotated[str, typer.Option(help="Concept-vector: comma list of strengths eta, searched in order.")
                    ] = "0,0.5,1,1.5,2,3,4,6",
    queries: Annotated[int, typer.Option(help="Discrete: detector queries per start prompt.")] = 24,
    inversion_steps: Annotated[int, typer.Option(help="Embedding inversion: Adam steps on the shared placeholder "
                                                      "states (0..10000).")] = 60,
    inversion_tokens: Annotated[int, typer.Option(help="Embedding inversion: placeholder states (1..32; VAR: "
                                                       "one class embedding).")] = 4,
    override_k: Annotated[str, typer.Option(help="Early-scale override: comma list of k, the number of first "
                                                 "scales forced to the original model's concept tokens "
                                                 "(0..K-1).")] = "0,1,2,3",
    best_of: Annotated[int, typer.Option(help="Early-scale override: early-token draws per attempt, the one the "
                                              "detector scores highest is kept (1..64).")] = 4,
    relearn_steps: Annotated[int, typer.Option(help="Relearning: LoRA fine-tuning steps on benign data "
                                                    "(0..10000).")] = 20,
    localise: Annotated[bool, typer.Option(help="Localise every successful condition attack: ASR with the "
                                                "attacked condition only at scale 0, at scales >= 1, up to k.")
                        ] = True,
    detector: Annotated[str, typer.Option(help="Judge of the attack images: " + detector_help())] = "auto",
    sanity: Annotated[bool, typer.Option(help="Also run the soft-prompt attack from the anchors against the "
                                              "original model.")] = True,
    sace_steps: Annotated[int | None, typer.Option(help="Steps for SACE trained here.")] = None,
    baseline_steps: Annotated[int | None, typer.Option(help="Steps for S-VARE/ESD trained here.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, table.md, report.html, curves/, grids/, "
                                           "adapters/.")] = Path("out/attack"),
    model: ModelOpt = "fashion",
    sampling: Sampling = SAMPLING_NO_TOP,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    device: DeviceOpt = "",
    force: ForceOpt = False,
) -> None:
    """Attack erased models (soft-prompt, concept-vector, discrete prompt search, embedding inversion, early-scale
    override, relearning) with the same budget, seeds and detector for every method; one ASR table per run, with
    cost, ASR-vs-budget curves, localisation per scale and success grids."""
    check_adapter_folders(adapter)
    try:
        eta_values = [float(x) for x in etas.split(",") if x.strip()]
    except ValueError as e:
        raise SaceError(f"--etas must be a comma list of numbers, got {etas!r}") from e
    try:
        ks = [int(x) for x in override_k.split(",") if x.strip()]
    except ValueError as e:
        raise SaceError(f"--override-k must be a comma list of integers, got {override_k!r}") from e
    cfgs = AttackConfigs(SoftPromptConfig(mode=soft_mode, n_tokens=soft_tokens, radius=soft_radius, steps=soft_steps,
                                          seed=seed),
                         ConceptVectorConfig(eta_values), DiscreteConfig(queries=queries, seed=seed),
                         InversionConfig(steps=inversion_steps, n_tokens=inversion_tokens, seed=seed),
                         OverrideConfig(ks=ks, best_of=best_of), RelearnConfig(steps=relearn_steps, seed=seed))
    req = AttackRequest(comma_list(concept), anchor, comma_list(methods), adapter_paths(adapter),
                        parse_attacks(attacks), n_prompts, eval_seeds, search_seeds, seed, detector, cfgs,
                        sampling.settings(), sanity, sace_steps, baseline_steps, localise=localise)
    req.validate()
    cfgs.soft.validate()
    v.output_dir(out)                 # a file / under a file / read-only: before loading anything
    m = load(ctx, model, device)
    req.validate(m.schedule.num_scales)
    t = time.perf_counter()
    # the folder's record: everything that determines its results, the trained adapters' settings included
    # (a rerun with other --sace-steps / --anchor is refused, or with --force retrains them)
    rec = output_record(m, adapter, concepts=req.concepts, anchor=anchor, methods=req.methods,
                        attacks=req.attacks, n_prompts=n_prompts, eval_seeds=eval_seeds, search_seeds=search_seeds,
                        seed=seed, detector=detector, budgets=asdict(cfgs), sampling=req.settings.resolved(m),
                        sanity=sanity, sace_steps=sace_steps, baseline_steps=baseline_steps, localise=localise)
    with open_output(out, "attack", rec, ATTACK_FILES, force=force) as folder, \
            on_interrupt(lambda: _attack_note(out)):
        bench = run_attack_benchmark(m, req, out)
        table = write_attack_benchmark(bench, out)
        folder.complete(concepts=len(req.concepts))
    rep = bench.metrics
    c = console()
    c.print(table)
    for name, rows in rep["concepts"].items():
        for r in rows:
            if r["attack"].startswith("discrete"):
                found = " | ".join(f["prompt"] for f in r["found"])
                c.print(f"discrete prompts found ({name}, {r['target']}, ASR {r['asr']:.3f}): {found}", soft_wrap=True)
    for name, r in rep["sanity"].items():
        c.print(f"sanity ({name}): soft-prompt from the anchors against the original model, ASR {r['asr']:.3f}")
    c.print(f"attacked in {time.perf_counter() - t:.1f} s -> {out}/metrics.json, {out}/table.md, {out}/report.html")


#: what ``sace attack`` writes into ``--out`` (what ``--force`` deletes; the trained adapters are kept and
#: reused when their recorded training settings match, retrained otherwise)
ATTACK_FILES = ("metrics.json", "metrics.partial.json", "table.md", "report.html", "curves", "grids")


def _attack_note(out: Path) -> str:
    """What an interrupted ``sace attack`` kept in ``out`` and how to continue."""
    ads = sorted(p.name for p in (Path(out) / "adapters").glob("*") if (p / "adapter.json").exists())
    part = (Path(out) / "metrics.partial.json").exists()
    kept = (f"the trained adapters ({', '.join(ads)}) in {out}/adapters" if ads else "no trained adapter")
    return (f"{kept}{' and the finished concepts in metrics.partial.json' if part else ''} are kept; run the same "
            f"command again to reuse them (no table was written)")
