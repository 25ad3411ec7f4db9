"""``sace generate`` (images from prompts, resumable, sharded under torchrun) and ``sace models`` (the named
models)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from .. import validation as v
from ..concepts.prompts import load_prompt_set
from ..distributed import DistContext, generate_sharded
from ..errors import SaceError
from ..folders import on_interrupt, open_output
from ..generate import GENERATED_FILES, generate_to_dir, generation_record, write_generation_index
from ..images import load_png, save_grid
from ..models.registry import describe_models
from ..models.text import check_prompts
from .common import adapter_paths, console, load
from .options import SAMPLING, AdapterOpt, DeviceOpt, ForceOpt, ModelOpt, OtherBaseOpt, Sampling, sampling_options


@sampling_options
def generate(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt (repeatable).")] = None,
    prompts_file: Annotated[Path | None, typer.Option(help="CSV/JSON/JSONL/TXT with a 'prompt' column; "
                                                          "seeds from 'evaluation_seed' when present.")] = None,
    n: Annotated[int, typer.Option("--n", "--images-per-prompt", help="Images per prompt (at most 10000; "
                                   "under torchrun write --images-per-prompt: torchrun's parser refuses --n as "
                                   "an ambiguous abbreviation of its own options).")] = 8,
    seed: Annotated[int, typer.Option(help="First seed; image i of a prompt uses seed + i.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder (PNGs, grid.png, index.json).")] = Path("out/generate"),
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    negative_prompt: Annotated[str | None, typer.Option(help="Use this prompt as the guidance's "
                                                             "unconditional side.")] = None,
    sampling: Sampling = SAMPLING,
    batch_size: Annotated[int, typer.Option(help="Images per sampling pass.")] = 32,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Generate images: one PNG per image in OUT (named INDEX_sSEED.png), a grid.png of all of them,
    index.json (prompts, seeds, settings) and sace_manifest.json. Re-running the same command resumes (the
    finished PNGs are kept); other settings into the same OUT are refused (--force overwrites). Under torchrun
    or accelerate launch the prompts are sharded across processes (identical images) and rank 0 writes the
    grid and index."""
    v.count("--n", n)
    v.seed("--seed", seed)
    v.seed("--seed + --n - 1", seed + n - 1)
    v.batch_size(batch_size)
    v.negative_prompt(negative_prompt)
    s = sampling.settings()
    prompts, seeds = [], []
    if prompts_file:
        ps = load_prompt_set(prompts_file)
        prompts = list(ps.prompts)
        seeds = list(ps.seeds) if ps.seeds is not None else [seed + i for i in range(len(prompts))]
    for p in prompt or []:
        prompts += [p] * n
        seeds += [seed + i for i in range(n)]
    if not prompts:
        raise SaceError("no prompt given; use --prompt TEXT (repeatable) or --prompts-file FILE")
    prompts = check_prompts(prompts)   # before loading anything: bad input fails in a fraction of a second
    v.seeds(seeds, "--prompts-file seed")
    dist = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:   # started by torchrun / accelerate launch: shard the prompts
        dist = DistContext()
        device = device or str(dist.device)
    else:
        v.output_dir(out)                            # a file / under a file / read-only: before loading anything
    m = load(ctx, model, device, adapter, allow_other_base)
    adapters = adapter_paths(adapter)
    t = time.perf_counter()
    nrow = n if prompt and not prompts_file else min(8, len(prompts))   # one path per prompt
    note = lambda: (f"{sum(1 for p in Path(out).glob('*_s*.png'))} of {len(prompts)} images are in {out}; run the "
                    f"same command again to resume (finished images are kept)")
    with on_interrupt(note):
        if dist is not None:   # generate_sharded checks the folder and writes index.json on rank 0
            paths = generate_sharded(m, prompts, seeds, out, settings=s, negative_prompt=negative_prompt,
                                     batch_size=batch_size, ctx=dist, adapters=adapters, force=force)
            if not dist.is_main:
                return
            save_grid([load_png(p) for p in paths], nrow, Path(out) / "grid.png", upscale=1)
        else:
            # the record covers adapters by their weights (as the sharded path does), not by their folders
            rec = generation_record(m, prompts, seeds, s, negative_prompt, batch_size)
            with open_output(out, "generate", rec, GENERATED_FILES, force=force) as folder:
                paths = generate_to_dir(m, prompts, seeds, out, settings=s, negative_prompt=negative_prompt,
                                        batch_size=batch_size, progress=True, folder=folder)
                write_generation_index(out, model=m.name, prompts=prompts, seeds=seeds, paths=paths,
                                       settings=s.resolved(m), negative_prompt=negative_prompt, adapters=adapters,
                                       batch_size=batch_size)
                save_grid([load_png(p) for p in paths], nrow, Path(out) / "grid.png", upscale=1)
                folder.complete(images=len(paths))
    secs = time.perf_counter() - t
    console().print(f"wrote {len(paths)} images and grid.png to {out} ({secs:.2f} s)")


def models() -> None:
    """List the named models: parameters, weight sizes, schedule, files and whether they are available locally."""
    c = console()
    for d in describe_models():
        p = d.get("params") or {}
        w = d.get("weights_gb") or {}
        sch = d.get("schedule") or {}
        files = d.get("files") or {}
        te = d.get("text_encoder") or {}
        c.print(f"[bold]{d['name']}[/bold]  {'available' if d.get('exists') else 'not available locally'}")
        c.print(f"  {d.get('description', '')}")
        if p:
            c.print(f"  parameters: transformer {p.get('transformer', 0):,}, VAE {p.get('vae', 0):,}")
        if w:
            c.print("  weights: " + ", ".join(f"{k} {v:.2f} GB" if v >= 0.1 else f"{k} {v * 1000:.1f} MB"
                                             for k, v in w.items()))
        if sch:
            c.print(f"  schedule: {sch.get('num_scales')} scales, {sch.get('tokens')} tokens, "
                    f"{'x'.join(str(x) for x in sch.get('image_size', []))} px")
        if te:
            c.print(f"  text encoder: {te.get('path') or te.get('kind')}")
        for k, path in files.items():
            if path:
                c.print(f"  {k}: {path}")
