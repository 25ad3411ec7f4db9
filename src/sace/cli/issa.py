"""``sace issa``: inter-scale semantic attribution of a concept (how much of it each scale injects)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .. import validation as v
from ..concepts.prompts import load_prompt_set
from ..errors import SaceError
from ..folders import on_interrupt, open_output
from ..issa import issa as run_issa
from ..issa import write_issa_outputs
from ..models.text import check_prompts
from .common import adapter_paths, console, detector_help, load, output_record, show_judge, written_at_end
from .options import SAMPLING, AdapterOpt, DeviceOpt, ForceOpt, ModelOpt, OtherBaseOpt, Sampling, sampling_options


def _prompt_pairs(prompt: list[str] | None, anchor_prompt: list[str] | None,
                  pairs_file: Path | None) -> tuple[list[str], list[str]]:
    """The (concept prompt, anchor prompt) pairs of ``--prompt`` / ``--anchor-prompt`` and ``--pairs-file``.

    Raises:
        SaceError: a pairs file without an anchor column, no pair at all, or unpaired prompts.
    """
    prompts, anchors = list(prompt or []), list(anchor_prompt or [])
    if pairs_file:
        ps = load_prompt_set(pairs_file)
        col = ps.columns.get("anchor") or ps.columns.get("anchor_prompt")
        if col is None:
            raise SaceError(f"{pairs_file} needs an 'anchor' column next to 'prompt'")
        prompts += list(ps.prompts)
        anchors += [str(a) for a in col]
    if not prompts:
        raise SaceError("give at least one --prompt and its --anchor-prompt (or --pairs-file)")
    if len(prompts) != len(anchors):
        raise SaceError(f"{len(prompts)} --prompt but {len(anchors)} --anchor-prompt; they pair one to one")
    return prompts, anchors


@sampling_options
def issa(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Concept prompt c* (repeatable; "
                                                                            "pairs with --anchor-prompt).")] = None,
    anchor_prompt: Annotated[list[str] | None, typer.Option("--anchor-prompt", "-a",
                                                            help="Paired anchor prompt c (repeatable).")] = None,
    pairs_file: Annotated[Path | None, typer.Option(help="CSV/JSON with 'prompt' and 'anchor' columns.")] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1 plus --seed).")] = 16,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    concept: Annotated[str | None, typer.Option(help="Concept the judge scores (fashion: a class key; other "
                                                     "models: a preset such as nudity; default: the concept "
                                                     "the first prompt names).")] = None,
    detector: Annotated[str, typer.Option(help="Judge whose score ISSA plots (a class's probability, NudeNet's "
                                               "detection score): " + detector_help())] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder: issa.json, plots, heat maps, grids, report.html.")
                   ] = Path("out/issa"),
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    sampling: Sampling = SAMPLING,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """ISSA: how much of the concept each scale injects. Generates with the concept prompt up to scale k and
    the anchor from k on (and the reverse) for every k and seed, scores the images with a detector, and
    teacher-forces the concept pyramid under both prompts to measure per-scale logit divergence."""
    prompts, anchors = _prompt_pairs(prompt, anchor_prompt, pairs_file)
    v.count("--seeds", seeds)
    v.seed("--seed", seed)
    v.seed("--seed + --seeds - 1", seed + seeds - 1)
    s = sampling.settings()
    prompts, anchors = check_prompts(prompts), check_prompts(anchors)
    v.output_dir(out)
    m = load(ctx, model, device, adapter, allow_other_base)
    c = console()
    judge = show_judge(c, m, concept, detector, prompt=prompts[0], required=True)
    score_fn, concept_name = judge.score, judge.concept
    t = time.perf_counter()
    rec = output_record(m, adapter, prompts=prompts, anchors=anchors, seeds=[seed, seeds], concept=concept_name,
                        detector=detector, sampling=s.resolved(m))
    with open_output(out, "issa", rec, ("issa*.json", "*.png", "report.html"), force=force) as folder, \
            on_interrupt(written_at_end(out, "ISSA")):
        res = run_issa(m, prompts, anchors, [seed + i for i in range(seeds)], score_fn, concept=concept_name,
                       settings=s, progress=True)
        paths = write_issa_outputs(res, out, extra={"model": m.name, "adapters": adapter_paths(adapter),
                                                    "detector": detector, "judge": judge.describe()})
        folder.complete()
    secs = time.perf_counter() - t
    sm = res.summary()
    c.print(f"ISSA for '{concept_name}': S_0 = {sm['S0']:.3f} [{sm['S0_ci'][0]:.3f}, {sm['S0_ci'][1]:.3f}], "
            f"A(0) = {sm['A0']:.3f}, A(1) = {sm['A1']:.3f}, A(K) = {sm['AK']:.3f}, B(1) = {sm['B1']:.3f}, "
            f"scale-0 divergence share = {sm['divergence_share_scale0']:.3f}")
    c.print(f"{len(prompts)} pair(s) x {seeds} seeds in {res.passes} sampling pass(es): {res.seconds:.2f} s "
            f"(with plots {secs:.2f} s). Report: {paths.get('report')}")
