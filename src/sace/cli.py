"""The ``sace`` command: a thin layer that parses options and calls the library.

Bad input (unknown model or concept, empty prompt, missing adapter folder, corrupt checkpoint, ...) prints
one line ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from . import domains
from .errors import SaceError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Scale-aware concept erasure (SACE) for visual autoregressive text-to-image models.\n\n"
                       "Inspect where a concept enters generation (issa), erase it into a small scale-0 adapter "
                       "(erase), generate with it (generate) and compare against baselines (evaluate). "
                       "Without --model, everything runs on the embedded CPU model 'fashion'.")
train_app = typer.Typer(no_args_is_help=True, help="Train the embedded models from raw data.")
app.add_typer(train_app, name="train")

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Named model (fashion, infinity-2b, infinity-8b, "
                                                             "infinity-tiny-fixture, var-d16/20/24/30, "
                                                             "var-tiny-fixture; `sace models`) or a model folder.")]
AdapterOpt = Annotated[list[Path] | None, typer.Option("--adapter", help="Adapter folder (adapter.safetensors + "
                                                                          "adapter.json); repeat to compose several.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (default: cuda when available).")]
GuidanceOpt = Annotated[float | None, typer.Option(help="Guidance weight w (1 = none; VAR models ramp it from 1 "
                                                             "at scale 0 to w at the last); default: the model's.")]
TempOpt = Annotated[float | None, typer.Option(help="Sampling temperature tau; default: the model's.")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Top-k filter (0 = off); default: the model's.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Top-p filter (0 = off); default: the model's.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an output folder that holds results of other "
                                                       "settings (default: refuse).")]
OtherBaseOpt = Annotated[bool, typer.Option("--allow-other-base", help="Use an adapter trained on other weights "
                                                                       "of the same-named model (a warning instead "
                                                                       "of an error).")]


@dataclass(frozen=True)
class CheckpointPaths:
    """The global options: checkpoint overrides for every model a command loads (kept on typer's context
    object, not in module state)."""

    transformer_path: str | None = None
    vae_path: str | None = None
    text_encoder: str | None = None


@app.callback()
def _global_options(
    ctx: typer.Context,
    transformer_path: Annotated[str | None, typer.Option(
        help="Transformer checkpoint for --model infinity-2b/8b: a local .pth/.safetensors file, a sharded "
             "folder, or a file name in the model's Hugging Face repo (default: downloaded from the hub).")] = None,
    vae_path: Annotated[str | None, typer.Option(help="VAE checkpoint (same forms as --transformer-path).")] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder folder or hub id (e.g. a local "
                                                          "google/flan-t5-xl).")] = None,
) -> None:
    """Options given before the command apply to every model it loads."""
    ctx.obj = CheckpointPaths(transformer_path, vae_path, text_encoder)


def _device(device: str | None) -> str:
    from .validation import device as check_device
    return check_device(device)   # "" -> cuda when available; unknown names and missing CUDA: one line


def _load(ctx: typer.Context, model: str, device: str | None, adapters: list[Path] | None = None,
          allow_other_base: bool = False):
    from .adapters import load_adapters
    from .models.registry import load_model

    for a in adapters or []:
        if not Path(a).is_dir():
            raise SaceError(f"adapter folder not found: {a}")
    m = load_model(model, device=_device(device), **asdict(ctx.obj or CheckpointPaths()))
    if adapters:
        load_adapters(m, [str(a) for a in adapters], allow_other_base=allow_other_base)
    return m


def _settings(guidance, temperature, top_k, top_p):
    from .generate import SamplingSettings
    return SamplingSettings(guidance, temperature, top_k, top_p)


def _console():
    from rich.console import Console
    return Console(stderr=False)


@app.command()
def generate(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt (repeatable).")] = None,
    prompts_file: Annotated[Path | None, typer.Option(help="CSV/JSON/JSONL/TXT with a 'prompt' column; "
                                                          "seeds from 'evaluation_seed' when present.")] = None,
    n: Annotated[int, typer.Option("--n", help="Images per prompt.")] = 8,
    seed: Annotated[int, typer.Option(help="First seed; image i of a prompt uses seed + i.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder (PNGs, grid.png, index.json).")] = Path("out/generate"),
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    negative_prompt: Annotated[str | None, typer.Option(help="Use this prompt as the guidance's "
                                                             "unconditional side.")] = None,
    guidance: GuidanceOpt = None,
    temperature: TempOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
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
    from . import validation as v
    from .folders import on_interrupt, open_output
    from .generate import GENERATED_FILES, generate_to_dir, generation_record
    from .images import load_png, save_grid
    from .outputs import write_generation_index

    v.integer("--n", n, lo=1)
    v.seed("--seed", seed)
    v.seed("--seed + --n - 1", seed + n - 1)
    v.batch_size(batch_size)
    v.negative_prompt(negative_prompt)
    s = _settings(guidance, temperature, top_k, top_p)
    prompts, seeds = [], []
    if prompts_file:
        from .evaluation.prompts import load_prompt_set
        ps = load_prompt_set(prompts_file)
        prompts = list(ps.prompts)
        seeds = list(ps.seeds) if ps.seeds is not None else [seed + i for i in range(len(prompts))]
    for p in prompt or []:
        prompts += [p] * n
        seeds += [seed + i for i in range(n)]
    if not prompts:
        raise SaceError("no prompt given; use --prompt TEXT (repeatable) or --prompts-file FILE")
    from .models.text import check_prompts
    prompts = check_prompts(prompts)   # before loading anything: bad input fails in a fraction of a second
    v.seeds(seeds, "--prompts-file seed")
    dist = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:   # started by torchrun / accelerate launch: shard the prompts
        from .distributed import DistContext
        dist = DistContext()
        device = device or str(dist.device)
    else:
        v.output_dir(out)                            # a file / under a file / read-only: before loading anything
    m = _load(ctx, model, device, adapter, allow_other_base)
    adapters = [str(a) for a in adapter or []]
    t = time.perf_counter()
    nrow = n if prompt and not prompts_file else min(8, len(prompts))   # one path per prompt
    note = lambda: (f"{sum(1 for p in Path(out).glob('*_s*.png'))} of {len(prompts)} images are in {out}; run the "
                    f"same command again to resume (finished images are kept)")
    with on_interrupt(note):
        if dist is not None:   # generate_sharded checks the folder and writes index.json on rank 0
            from .distributed import generate_sharded
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
    _console().print(f"wrote {len(paths)} images and grid.png to {out} ({secs:.2f} s)")


@app.command()
def issa(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Concept prompt c* (repeatable; "
                                                                            "pairs with --anchor-prompt).")] = None,
    anchor_prompt: Annotated[list[str] | None, typer.Option("--anchor-prompt", "-a",
                                                            help="Paired anchor prompt c (repeatable).")] = None,
    pairs_file: Annotated[Path | None, typer.Option(help="CSV/JSON with 'prompt' and 'anchor' columns.")] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1 plus --seed).")] = 16,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    concept: Annotated[str | None, typer.Option(help="Concept the detector scores (fashion: a class key; "
                                                     "default: the class the prompt names).")] = None,
    detector: Annotated[str, typer.Option(help="fashion (classifier probability), nudenet or opennsfw; "
                                               "auto = the model's domain detector (fashion for the fashion "
                                               "model), else nudenet.")] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder: issa.json, plots, heat maps, grids, report.html.")
                   ] = Path("out/issa"),
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    guidance: GuidanceOpt = None,
    temperature: TempOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """ISSA: how much of the concept each scale injects. Generates with the concept prompt up to scale k and
    the anchor from k on (and the reverse) for every k and seed, scores the images with a detector, and
    teacher-forces the concept pyramid under both prompts to measure per-scale logit divergence."""
    from .issa import issa as run_issa
    from .issa import write_issa_outputs

    prompts, anchors = list(prompt or []), list(anchor_prompt or [])
    if pairs_file:
        from .evaluation.prompts import load_prompt_set
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
    from . import validation as v
    from .fingerprint import model_hashes
    from .folders import on_interrupt, open_output

    v.integer("--seeds", seeds, lo=1)
    v.seed("--seed", seed)
    v.seed("--seed + --seeds - 1", seed + seeds - 1)
    s = _settings(guidance, temperature, top_k, top_p)
    from .models.text import check_prompts
    prompts, anchors = check_prompts(prompts), check_prompts(anchors)
    v.output_dir(out)
    m = _load(ctx, model, device, adapter, allow_other_base)
    from .evaluation.selection import detector_kind, issa_scorer
    score_fn, concept_name = issa_scorer(detector_kind(detector, m), concept, prompts[0])
    t = time.perf_counter()
    rec = {"model": m.name, "hashes": model_hashes(m), "adapter_files": _adapter_hashes(adapter),
           "prompts": prompts, "anchors": anchors, "seeds": [seed, seeds], "concept": concept_name,
           "detector": detector, "sampling": s.resolved(m)}
    with open_output(out, "issa", rec, ("issa*.json", "*.png", "report.html"), force=force) as folder, \
            on_interrupt(lambda: f"nothing was written to {out} (ISSA writes its results at the end); run the "
                                 f"command again"):
        res = run_issa(m, prompts, anchors, [seed + i for i in range(seeds)], score_fn, concept=concept_name,
                       settings=s, progress=True)
        paths = write_issa_outputs(res, out, extra={"model": m.name, "adapters": [str(a) for a in adapter or []],
                                                    "detector": detector})
        folder.complete()
    secs = time.perf_counter() - t
    sm = res.summary()
    c = _console()
    c.print(f"ISSA for '{concept_name}': S_0 = {sm['S0']:.3f} [{sm['S0_ci'][0]:.3f}, {sm['S0_ci'][1]:.3f}], "
            f"A(0) = {sm['A0']:.3f}, A(1) = {sm['A1']:.3f}, A(K) = {sm['AK']:.3f}, B(1) = {sm['B1']:.3f}, "
            f"scale-0 divergence share = {sm['divergence_share_scale0']:.3f}")
    c.print(f"{len(prompts)} pair(s) x {seeds} seeds in {res.passes} sampling pass(es): {res.seconds:.2f} s "
            f"(with plots {secs:.2f} s). Report: {paths.get('report')}")


def _adapter_hashes(adapters) -> list[str]:
    from .fingerprint import adapter_hashes
    return adapter_hashes(adapters or [])


@app.command()
def erase(
    ctx: typer.Context,
    concept: Annotated[list[str] | None, typer.Option(help="Concept name (fashion: a class key such as sneaker; other "
                                                           "models: a preset of `sace concepts`, e.g. nudity); "
                                                           "repeat to erase several with one adapter.")] = None,
    anchor: Annotated[list[str] | None, typer.Option(help="Harmless anchor phrase/class replacing the concept "
                                                          "(fashion default: the class's default anchor); one "
                                                          "per --concept.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Target prompt containing the concept "
                                                                      "(repeatable).")] = None,
    retain: Annotated[list[str] | None, typer.Option("--retain", help="Prompt to preserve (repeatable).")] = None,
    concept_file: Annotated[Path | None, typer.Option(help="JSON concept definition (name, targets, anchors "
                                                           "or anchor, retain, heldout).")] = None,
    out: Annotated[Path | None, typer.Option(help="Adapter folder to write (default: out/erase-CONCEPT).")] = None,
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    modules: Annotated[str | None, typer.Option(help="Comma list of adapted layer groups: cross_attn_q, "
                                                     "cross_attn_kv, cross_attn_out, ffn, self_attn, text_pool, "
                                                     "text_proj, adaln_shared, head, head_adaln (default: "
                                                     "cross-attention q/kv/out and ffn).")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (default 8).")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha; the delta is scaled by alpha/rank "
                                                     "(default 8).")] = None,
    gate: Annotated[str | None, typer.Option(help="Scales the adapter acts on and the losses see: scale0 "
                                                  "(METHOD.md), shared (all scales, scale-0 loss), or an early-scale "
                                                  "prefix scales:0,1,..,k (loss at every gated scale), or auto "
                                                  "(the smallest prefix ISSA allows, see --gate-tol). Default: "
                                                  "the model's (fashion: all six scales, chosen from ISSA; "
                                                  "others: scale0).")] = None,
    isolation: Annotated[str | None, typer.Option(help="scale0 gate only: strict (later scales attend to the "
                                                       "unadapted scale-0 token; the edit reaches them only "
                                                       "through the sampled scale-0 bits; default) or context "
                                                       "(they attend to the adapted one).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning of the chosen layers (a dense gated "
                                                      "delta) instead of LoRA.")] = False,
    lambda_h: Annotated[float | None, typer.Option("--lambda-h", help="Entropy weight in L_ER (default 0.1).")
                        ] = None,
    lambda_pre: Annotated[float | None, typer.Option("--lambda-pre", help="Weight of L_pre (default 1).")] = None,
    mu: Annotated[float | None, typer.Option(help="Later-scale preservation weight (default 0 for scale0, 0.1 "
                                                  "shared, 1 for an early-scale gate).")] = None,
    target_mode: Annotated[str | None, typer.Option("--target-mode", help="soft (KL to the teacher; default) "
                                                                          "or hard (CE to sampled bits).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimisation steps (default: the model's; 300 in METHOD.md)."
                                              )] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model's; 1e-4 in METHOD.md).")
                  ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Prompts per step from each set (0 = all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 50,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in OUT (same concept and "
                                                          "settings; only --steps may grow).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the prompt sets (targets, anchors, "
                                                           "entangled, retain, held-out) and write them to "
                                                           "OUT/prompts.json; train nothing.")] = False,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Skip the pre-training audit of the prompt "
                                                             "sets.")] = False,
    detector: Annotated[str, typer.Option(help="Detector of the audit and the check: auto (fashion "
                                               "classifier / NudeNet), fashion, nudenet or none.")] = "auto",
    check_images: Annotated[int, typer.Option(help="Images per set (targets, held-out, retain) of the "
                                                   "post-training check (0 = no check).")] = 50,
    max_acc_e: Annotated[float, typer.Option(help="Check: pass if ACC_e <= this (fraction).")] = 0.05,
    max_heldout: Annotated[float, typer.Option(help="Check: pass if held-out ACC_e <= this.")] = 0.10,
    max_acc_i_drop: Annotated[float, typer.Option(help="Check: pass if ACC_i drops by <= this (fraction "
                                                       "points: 0.02 = 2 points).")] = 0.02,
    until_pass: Annotated[bool, typer.Option("--until-pass", help="Keep training (half the steps per round) "
                                                                  "until the check passes or --max-steps.")
                          ] = False,
    max_steps: Annotated[int, typer.Option(help="Step budget of --until-pass (0 = 3 x --steps).")] = 0,
    gate_tol: Annotated[float, typer.Option(help="--gate auto: the smallest prefix of scales whose ISSA "
                                                 "late-injection residual B(k+1) is below this.")] = 0.1,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Erase a concept with SACE into a scale-gated adapter folder (adapter.safetensors + adapter.json +
    train_log.json; a checkpoint every --checkpoint-every steps, --resume continues). Prints wall time and
    tokens per step. Defaults: METHOD.md §3 updated by the model's own (fashion: all six scales, see README)."""
    from . import validation as v
    from .erasure.concepts import write_prompt_sets
    from .erasure.presets import resolve_concept_or_preset
    from .erasure.sace import default_sace_config
    from .fingerprint import model_hashes
    from .folders import on_interrupt, open_output

    # numeric options first: a bad value fails in a fraction of a second, not after loading the model
    for opt, val, lo in (("--rank", rank, 1), ("--steps", steps, 1), ("--batch-size", batch_size, 0),
                         ("--checkpoint-every", checkpoint_every, 1)):
        v.integer(opt, val, lo=lo)
    v.finite("--lr", lr, lo=0, lo_open=True)
    v.finite("--alpha", alpha, lo=0, lo_open=True)
    for opt, val in (("--lambda-h", lambda_h), ("--lambda-pre", lambda_pre), ("--mu", mu)):
        v.finite(opt, val, lo=0)
    v.seed("--seed", seed)
    if out is not None:
        v.output_dir(out)
    m = _load(ctx, model, device, adapter, allow_other_base)
    spec = resolve_concept_or_preset(concept, anchor=anchor, targets=target or [], retain=retain or [],
                                     concept_file=str(concept_file) if concept_file else None,
                                     domain=domains.name_of(m))
    out = out or Path(f"out/erase-{spec.name}")
    c = _console()
    if dry_run:
        path = write_prompt_sets(spec, out / "prompts.json")
        for k in ("targets", "anchors", "entangled", "retain", "heldout"):
            vals = getattr(spec, k)
            c.print(f"[bold]{k}[/bold] ({len(vals)}):", highlight=False)
            for prompt in vals:
                c.print(f"  {prompt}", highlight=False, markup=False)
        c.print(f"dry run: nothing trained; prompt sets written to {path}")
        return
    cfg = default_sace_config(
        m, modules=[x.strip() for x in modules.split(",") if x.strip()] if modules else None, rank=rank,
        alpha=alpha, gate=gate, kind="full" if full else None, isolation=isolation, target=target_mode, seed=seed,
        checkpoint_every=checkpoint_every, lambda_h=lambda_h, lambda_pre=lambda_pre, mu=mu, steps=steps, lr=lr,
        batch_size=batch_size)
    v.check_train_config(cfg, m)
    v.output_dir(out)
    from .erasure.checkpoints import RESUMABLE_FIELDS
    rec = {"model": m.name, "hashes": model_hashes(m), "adapter_files": _adapter_hashes(adapter),
           "concept": spec.name, "concept_definition": spec.to_dict(),
           "config": {k: x for k, x in asdict(cfg).items() if k not in RESUMABLE_FIELDS}}
    from .erasure.check import CheckThresholds
    from .erasure.workflow import EraseOptions, erase_checked
    from .evaluation.cost import measure
    opts = EraseOptions(audit=not no_audit, check_images=check_images, detector=detector, until_pass=until_pass,
                        max_steps=max_steps, gate_tol=gate_tol,
                        thresholds=CheckThresholds(max_acc_e, max_heldout, max_acc_i_drop))
    owned = ("adapter.safetensors", "adapter.json", "train_log.json", "sace_checkpoint.pt")
    with open_output(out, "erase", rec, owned, force=force) as folder, on_interrupt(lambda: _erase_note(out, cfg)):
        outcome, cost = measure(lambda: erase_checked(m, spec, cfg, opts, out_dir=out, resume=resume, progress=True,
                                                      say=lambda s: c.print(s, highlight=False, markup=False)),
                                m.device)
        res = outcome.result
        from .adapters import save_adapter
        res.adapter.metadata["peak_mb"] = cost.peak_mb
        save_adapter(res.adapter, out, model=m)
        folder.complete(steps=cfg.steps)
    last = res.log[-1] if res.log else {}
    c.print(
        f"erased '{spec.name}' (anchor '{spec.anchor_name or '-'}') in {res.seconds:.1f} s "
        f"({len(res.log)} steps, {res.tokens_per_step} tokens/step, peak {cost.peak_mb or float('nan'):.0f} MB); "
        f"final L_ER {last.get('L_ER', float('nan')):.4f}, L_pre {last.get('L_pre', float('nan')):.4f}, "
        f"target scale-0 entropy {last.get('entropy_target', float('nan')):.3f} nats -> {out}")
    if outcome.check is not None and outcome.check.passed is False:
        c.print("warning: the post-training check FAILED (see above); the adapter does not meet the thresholds")


@app.command()
def audit(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Concept name (fashion: a class key such as sneaker).")] = None,
    anchor: Annotated[str | None, typer.Option(help="Anchor phrase/class (fashion default: the class's default "
                                                    "anchor).")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Target prompt (repeatable).")] = None,
    retain: Annotated[list[str] | None, typer.Option("--retain", help="Prompt to preserve (repeatable).")] = None,
    concept_file: Annotated[Path | None, typer.Option(help="JSON concept definition.")] = None,
    detector: Annotated[str, typer.Option(help="auto, fashion, nudenet or none.")] = "auto",
    images: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    out: Annotated[Path | None, typer.Option(help="Folder for audit.json (default: out/audit-CONCEPT).")] = None,
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "",
) -> None:
    """Audit a concept's prompt sets on the frozen model before training: anchors that draw the concept are an
    error, entangled/retain prompts that draw it are dropped, targets that do not draw it are a warning."""
    from .erasure.audit import AuditConfig, AuditError, audit_concept
    from .erasure.presets import resolve_concept_or_preset
    from .io import write_json

    if images < 1:
        raise SaceError("--images must be >= 1")
    m = _load(ctx, model, device, adapter)
    spec = resolve_concept_or_preset(concept, anchor=anchor, targets=target or [], retain=retain or [],
                                     concept_file=str(concept_file) if concept_file else None,
                                     domain=domains.name_of(m))
    out = out or Path(f"out/audit-{spec.name}")
    c = _console()
    try:
        res, _ = audit_concept(m, spec, detector, AuditConfig(images_per_prompt=images), progress=True)
    except AuditError as e:
        write_json(out / "audit.json", e.result.to_dict())
        for line in e.result.lines():
            c.print(line, highlight=False, markup=False)
        raise
    write_json(out / "audit.json", res.to_dict())
    for line in res.lines():
        c.print(line, highlight=False, markup=False)
    c.print(f"-> {out / 'audit.json'}")


def _erase_note(out: Path, cfg) -> str:
    """What an interrupted ``sace erase`` left behind and how to continue."""
    ck = Path(out) / "sace_checkpoint.pt"
    if ck.exists():
        from .io import torch_load_weights
        try:
            step = torch_load_weights(ck).get("step", "?")
        except SaceError:
            step = "?"
        return (f"the last checkpoint (step {step} of {cfg.steps}) is {ck}; run the same command with --resume "
                f"to continue")
    return (f"no checkpoint was written yet (one every {cfg.checkpoint_every} steps), nothing was saved in {out}; "
            f"run the command again")


@app.command()
def evaluate(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Erased concept (fashion: class key -> ACC_e/ACC_i on the "
                                                     "built-in prompt sets; other models: a preset of "
                                                     "`sace concepts`).")] = None,
    anchor: Annotated[str | None, typer.Option(help="Anchor for methods trained here (default: nearest class).")
                      ] = None,
    adapter: AdapterOpt = None,
    methods: Annotated[str, typer.Option(help="Comma list of original, sace, svare, esd, negprompt, swap0, "
                                              "sace_noent (lambda_H=0), sace_nopre (lambda_pre=0), sace_shared "
                                              "(ungated), sace_scale0 (METHOD.md's scale-0 defaults), or 'all' / "
                                              "'ablations'. Trainable methods are trained "
                                              "here and timed.")] = "original",
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
    detector: Annotated[str, typer.Option(help="auto, fashion, nudenet, opennsfw or none.")] = "auto",
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
    guidance: GuidanceOpt = None,
    temperature: TempOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per sampling pass.")] = 64,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Evaluate erasure vs preservation vs cost on the same prompts and seeds for every method, in one table."""
    from . import validation as v
    from .evaluation.runner import EvalRequest, parse_methods, run_evaluation
    from .fingerprint import model_hashes
    from .folders import on_interrupt, open_output
    from .outputs import write_evaluation
    from .reporting import Report
    from .reporting.sections import evaluation_section

    req = EvalRequest(concept=concept, anchor=anchor, methods=parse_methods(methods, bool(adapter)),
                      adapters=[str(a) for a in adapter or []], prompts_file=str(prompts) if prompts else None,
                      categories=categories, limit=limit, detector=detector, nudenet_threshold=nudenet_threshold,
                      n_per_class=n_per_class, n_heldout=n_heldout, inception_images=inception_images,
                      batch_size=batch_size, settings=_settings(guidance, temperature, top_k, top_p),
                      sace_steps=sace_steps, baseline_steps=baseline_steps, seed=seed, benchmark=benchmark,
                      prompts_dir=str(prompts_dir) if prompts_dir else None,
                      reference_images=str(reference_images) if reference_images else None, clip_model=clip_model,
                      allow_other_base=allow_other_base)
    v.check_eval_request(req)          # the numbers before loading anything (run_evaluation checks again)
    for a in adapter or []:
        if not Path(a).is_dir():
            raise SaceError(f"adapter folder not found: {a}")
    v.output_dir(out)
    m = _load(ctx, model, device)
    t = time.perf_counter()
    rec = {"model": m.name, "hashes": model_hashes(m), "adapter_files": _adapter_hashes(adapter),
           "prompts_file": _file_digest(prompts), "request": asdict(req)}
    owned = ("metrics.json", "table.md", "table.html", "report.html", "grids")
    with open_output(out, "evaluate", rec, owned, force=force) as folder, \
            on_interrupt(lambda: f"nothing was written to {out} (evaluate writes its results at the end); run "
                                 f"the command again"):
        rep = run_evaluation(m, req, out)
        write_evaluation(out, rep)
        page = Report(f"sace evaluate: {req.benchmark or (rep.concept.name if rep.concept else req.prompts_file)}",
                      subtitle=f"model {m.name}, {rep.result.n_items} images per method")
        evaluation_section(page, rep.rows, rep.result.methods, out).write(out / "report.html")
        folder.complete()
    c = _console()
    c.print(rep.table_markdown)
    c.print(f"evaluated {len(rep.result.methods)} method(s) in {time.perf_counter() - t:.1f} s -> {out}/metrics.json, "
            f"{out}/table.md, {out}/report.html")


def _file_digest(path: Path | None) -> str | None:
    from .fingerprint import file_hash
    return file_hash(path) if path is not None and Path(path).is_file() else None


@app.command()
def concepts() -> None:
    """List the concept presets for text-to-image models (sace/assets/concepts): prompt counts, the detector
    and the benchmark that score them. Use one with `sace erase --model infinity-2b --concept NAME`."""
    from .erasure.presets import describe_presets
    from .reporting import markdown_table

    rows = [{"name": r["name"], "targets": r["targets"], "anchors": r["anchors"], "retain": r["retain"],
             "heldout": r["heldout"], "detector": r["detector"], "benchmark": r["benchmark"]}
            for r in describe_presets()]
    _console().print(markdown_table(rows))


@app.command()
def attack(
    ctx: typer.Context,
    concept: Annotated[str, typer.Option(help="Concept(s) to attack, comma list (fashion: class keys, e.g. "
                                              "sneaker,trouser).")],
    anchor: Annotated[str | None, typer.Option(help="Anchor for every concept (default: the model's).")] = None,
    methods: Annotated[str, typer.Option(help="Comma list of original, sace, svare, esd (trained here and saved "
                                              "to OUT/adapters, reused on a rerun), negprompt.")
                       ] = "original,sace,svare,esd",
    adapter: AdapterOpt = None,
    attacks: Annotated[str, typer.Option(help="Comma list of soft, vector, discrete or all; NAME:anchor or "
                                              "NAME:target picks the start prompts (defaults: soft and discrete "
                                              "from the concept prompts, vector from the anchors).")] = "all",
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
    detector: Annotated[str, typer.Option(help="auto, fashion, nudenet or opennsfw.")] = "auto",
    sanity: Annotated[bool, typer.Option(help="Also run the soft-prompt attack from the anchors against the "
                                              "original model.")] = True,
    sace_steps: Annotated[int | None, typer.Option(help="Steps for SACE trained here.")] = None,
    baseline_steps: Annotated[int | None, typer.Option(help="Steps for S-VARE/ESD trained here.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, table.md, report.html, curves/, grids/, "
                                           "adapters/.")] = Path("out/attack"),
    model: ModelOpt = "fashion",
    guidance: GuidanceOpt = None,
    temperature: TempOpt = None,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    device: DeviceOpt = "",
) -> None:
    """Attack erased models (soft-prompt, concept-vector, discrete prompt search) with the same budget, seeds and
    detector for every method; one ASR table per run, with cost, ASR-vs-budget curves and success grids."""
    from .attacks.benchmark import AttackRequest, run_attack_benchmark
    from .attacks.concept_vector import ConceptVectorConfig
    from .attacks.discrete import DiscreteConfig
    from .attacks.runner import AttackConfigs, parse_attacks
    from .attacks.soft_prompt import SoftPromptConfig

    for a in adapter or []:
        if not Path(a).is_dir():
            raise SaceError(f"adapter folder not found: {a}")
    try:
        eta_values = [float(x) for x in etas.split(",") if x.strip()]
    except ValueError as e:
        raise SaceError(f"--etas must be a comma list of numbers, got {etas!r}") from e
    cfgs = AttackConfigs(SoftPromptConfig(mode=soft_mode, n_tokens=soft_tokens, radius=soft_radius, steps=soft_steps,
                                          seed=seed),
                         ConceptVectorConfig(eta_values), DiscreteConfig(queries=queries, seed=seed))
    req = AttackRequest([c.strip() for c in concept.split(",") if c.strip()], anchor,
                        [m.strip() for m in methods.split(",") if m.strip()], [str(a) for a in adapter or []],
                        parse_attacks(attacks), n_prompts, eval_seeds, search_seeds, seed, detector, cfgs,
                        _settings(guidance, temperature, None, None), sanity, sace_steps, baseline_steps)
    req.validate()
    cfgs.soft.validate()
    m = _load(ctx, model, device)
    t = time.perf_counter()
    rep = run_attack_benchmark(m, req, out)
    c = _console()
    c.print(rep["table_markdown"])
    for name, rows in rep["concepts"].items():
        for r in rows:
            if r["attack"].startswith("discrete"):
                found = " | ".join(f["prompt"] for f in r["found"])
                c.print(f"discrete prompts found ({name}, {r['target']}, ASR {r['asr']:.3f}): {found}", soft_wrap=True)
    for name, r in rep["sanity"].items():
        c.print(f"sanity ({name}): soft-prompt from the anchors against the original model, ASR {r['asr']:.3f}")
    c.print(f"attacked in {time.perf_counter() - t:.1f} s -> {out}/metrics.json, {out}/table.md, {out}/report.html")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (report.html, metrics.json, issa/, adapter/).")
                   ] = Path("out/demo"),
    concept: Annotated[str, typer.Option(help="Fashion class to erase.")] = "sneaker",
    anchor: Annotated[str, typer.Option(help="Anchor class.")] = "sandal",
    seeds: Annotated[int, typer.Option(help="ISSA seeds.")] = 16,
    n_per_class: Annotated[int, typer.Option(help="Evaluation images per class.")] = 50,
    device: DeviceOpt = "",
) -> None:
    """The main job on the embedded model: ISSA of the concept, SACE erasure, evaluation of the original,
    SACE and S-VARE (plus the training-free baselines) on the same seeds, and one report.html."""
    from .recipes.demo import run_demo

    path = run_demo(out, concept=concept, anchor=anchor, seeds=seeds, n_per_class=n_per_class,
                    device=_device(device))
    _console().print(f"report: {path}")


@app.command()
def models() -> None:
    """List the named models: parameters, weight sizes, schedule, files and whether they are available locally."""
    from .models.registry import describe_models

    c = _console()
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
        for k, v in files.items():
            if v:
                c.print(f"  {k}: {v}")


@train_app.command("fashion")
def train_fashion(
    out: Annotated[Path, typer.Option(help="Work folder (checkpoints, logs, model/).")] = Path("runs/fashion"),
    install: Annotated[bool, typer.Option("--install", help="Copy the result into the package as the "
                                                            "default model.")] = False,
    only: Annotated[str | None, typer.Option(help="Stop after: classifier, vae or transformer.")] = None,
    steps: Annotated[int | None, typer.Option(help="Transformer steps (default: the recipe's).")] = None,
) -> None:
    """Build the embedded 'fashion' model from Debian's Fashion-MNIST files: classifier, BSQ VAE, transformer,
    model card (resumable; about an hour on 2 CPU cores)."""
    from .recipes.fashion import FashionRecipe, build_fashion

    r = FashionRecipe()
    if steps:
        r.steps = steps
    t = time.perf_counter()
    folder = build_fashion(out, r, install=install, only=only)
    _console().print(f"built {folder} in {(time.perf_counter() - t) / 60:.1f} min")


@train_app.command("fashion-var")
def train_fashion_var(
    out: Annotated[Path, typer.Option(help="Work folder (checkpoints, logs, model/).")] = Path("runs/fashion-var"),
    only: Annotated[str | None, typer.Option(help="Stop after: vae.")] = None,
    vae_steps: Annotated[int | None, typer.Option(help="VQVAE steps (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Transformer steps (default: the recipe's).")] = None,
    subset: Annotated[int, typer.Option(help="Train on this many images (0: all; for smoke runs).")] = 0,
) -> None:
    """Build the class-conditional 'fashion-var' model (VAR architecture) from Fashion-MNIST (resumable)."""
    from .recipes.fashion_var import FashionVARRecipe, build_fashion_var

    r = FashionVARRecipe(train_subset=subset)
    r.vae_steps, r.steps = vae_steps or r.vae_steps, steps or r.steps
    t = time.perf_counter()
    folder = build_fashion_var(out, r, only=only)
    _console().print(f"built {folder} in {(time.perf_counter() - t) / 60:.1f} min")


def main() -> None:
    """Entry point: run the typer app; user errors become one line and exit status 2."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # sace's own warnings (other base weights, untrained schedule) as one line each, like the errors
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        app()
    except SaceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: nothing was saved", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        from .folders import Interrupted
        if not isinstance(e, Interrupted):
            raise
        print(f"interrupted: {e.note}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
