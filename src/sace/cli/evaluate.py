"""``sace evaluate``: erasure vs preservation vs cost of every method on the same prompts and seeds."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .. import validation as v
from ..concepts.judge import judge_line
from ..erasure import catalogue
from ..evaluation.runner import EvalRequest, parse_methods, run_evaluation
from ..folders import on_interrupt, open_output
from ..outputs import write_evaluation
from ..reporting import Report
from ..reporting.sections import evaluation_section
from .common import (
    adapter_paths,
    check_adapter_folders,
    console,
    detector_help,
    file_digest,
    load,
    output_record,
    written_at_end,
)
from .options import SAMPLING, AdapterOpt, DeviceOpt, ForceOpt, ModelOpt, OtherBaseOpt, Sampling, sampling_options


@sampling_options
def evaluate(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Erased concept (fashion: class key -> ACC_e/ACC_i on the "
                                                     "built-in prompt sets; other models: a preset of "
                                                     "`sace concepts`).")] = None,
    anchor: Annotated[str | None, typer.Option(help="Anchor for methods trained here (default: nearest class).")
                      ] = None,
    adapter: AdapterOpt = None,
    methods: Annotated[str, typer.Option(help="Comma list of the method catalogue's rows: " + "; ".join(
        f"{k} ({m.label})" for k, m in catalogue.METHODS.items()) + "; or 'all' (every row but the ablations) / "
        "'ablations'. Trained methods are trained here and timed.")] = "original",
    prompts: Annotated[Path | None, typer.Option(help="Prompt set (CSV/JSON with a 'prompt' column; seeds from "
                                                      "'evaluation_seed'), e.g. I2P.")] = None,
    categories: Annotated[str | None, typer.Option(help="Keep rows whose 'categories' contain this "
                                                        "(I2P: sexual).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N prompts.")] = None,
    benchmark: Annotated[str | None, typer.Option(help="A standard benchmark with its own prompts, seeds and "
                                                       "detector: i2p-sexual (NudeNet counts), imagenette "
                                                       "(ACC_e/ACC_i, EfficientNet-Lite0 top-1) or coco (FID/KID, "
                                                       "CLIP score). Combine with --limit N for a quick look.")
                         ] = None,
    prompts_dir: Annotated[Path | None, typer.Option(help="Folder of the benchmark CSVs (default: "
                                                          "shared/data/prompts or $SACE_PROMPTS_DIR).")] = None,
    reference_images: Annotated[Path | None, typer.Option(help="coco: folder of real images for FID/KID "
                                                               "(default: FID/KID to the original model's images)."
                                                               )] = None,
    clip_model: Annotated[str | None, typer.Option(help="coco: CLIP hub id or local folder for CLIP score "
                                                        "(e.g. openai/clip-vit-large-patch14).")] = None,
    detector: Annotated[str, typer.Option(help="Judge of every method's images: " + detector_help())] = "auto",
    nudenet_threshold: Annotated[float, typer.Option(help="NudeNet score threshold.")] = 0.6,
    n_per_class: Annotated[int, typer.Option(help="Images per class (fashion).")] = 50,
    n_heldout: Annotated[int, typer.Option(help="Held-out paraphrase images of the concept (fashion).")] = 50,
    inception_images: Annotated[int, typer.Option(help="Images per method for Inception FID/KID (0 = skip; "
                                                       "~0.2 s/image on CPU).")] = 0,
    sace_steps: Annotated[int | None, typer.Option(help="Steps for SACE trained here.")] = None,
    baseline_steps: Annotated[int | None, typer.Option(help="Steps for S-VARE/ESD trained here.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, table.md/html, report.html, grids/.")
                   ] = Path("out/evaluate"),
    model: ModelOpt = "fashion",
    sampling: Sampling = SAMPLING,
    batch_size: Annotated[int, typer.Option(help="Images per sampling pass.")] = 64,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Evaluate erasure vs preservation vs cost on the same prompts and seeds for every method, in one table."""
    req = EvalRequest(concept=concept, anchor=anchor, methods=parse_methods(methods, bool(adapter)),
                      adapters=adapter_paths(adapter), prompts_file=str(prompts) if prompts else None,
                      categories=categories, limit=limit, detector=detector, nudenet_threshold=nudenet_threshold,
                      n_per_class=n_per_class, n_heldout=n_heldout, inception_images=inception_images,
                      batch_size=batch_size, settings=sampling.settings(),
                      sace_steps=sace_steps, baseline_steps=baseline_steps, seed=seed, benchmark=benchmark,
                      prompts_dir=str(prompts_dir) if prompts_dir else None,
                      reference_images=str(reference_images) if reference_images else None, clip_model=clip_model,
                      allow_other_base=allow_other_base)
    v.check_eval_request(req)          # the numbers before loading anything (run_evaluation checks again)
    check_adapter_folders(adapter)
    v.output_dir(out)
    m = load(ctx, model, device)
    t = time.perf_counter()
    rec = output_record(m, adapter, prompts_file=file_digest(prompts), request=asdict(req))
    owned = ("metrics.json", "table.md", "table.html", "report.html", "grids")
    with open_output(out, "evaluate", rec, owned, force=force) as folder, \
            on_interrupt(written_at_end(out, "evaluate")):
        rep = run_evaluation(m, req, out)
        write_evaluation(out, rep)
        page = Report(f"sace evaluate: {req.benchmark or (rep.concept.name if rep.concept else req.prompts_file)}",
                      subtitle=f"model {m.name}, {rep.result.n_items} images per method")
        evaluation_section(page, rep.rows, rep.result.methods, out).write(out / "report.html")
        folder.complete()
    c = console()
    if rep.judge is not None:
        c.print(judge_line(rep.judge, "no concept metrics"), highlight=False, markup=False, soft_wrap=True)
    c.print(rep.table_markdown)
    c.print(f"evaluated {len(rep.result.methods)} method(s) in {time.perf_counter() - t:.1f} s -> {out}/metrics.json, "
            f"{out}/table.md, {out}/report.html")
