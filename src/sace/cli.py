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
                                                             "infinity-tiny-fixture) or a sace model folder.")]
AdapterOpt = Annotated[list[Path] | None, typer.Option("--adapter", help="Adapter folder (adapter.safetensors + "
                                                                          "adapter.json); repeat to compose several.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (default: cuda when available).")]
GuidanceOpt = Annotated[float | None, typer.Option(help="Guidance weight w (1 = none); default: the model's.")]
TempOpt = Annotated[float | None, typer.Option(help="Sampling temperature tau; default: the model's.")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Top-k filter (0 = off); default: the model's.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Top-p filter (0 = off); default: the model's.")]


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
    if device:
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(ctx: typer.Context, model: str, device: str | None, adapters: list[Path] | None = None):
    from .adapters import load_adapters
    from .models.registry import load_model

    for a in adapters or []:
        if not Path(a).is_dir():
            raise SaceError(f"adapter folder not found: {a}")
    m = load_model(model, device=_device(device), **asdict(ctx.obj or CheckpointPaths()))
    if adapters:
        load_adapters(m, [str(a) for a in adapters])
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
) -> None:
    """Generate images: one PNG per image in OUT (named INDEX_sSEED.png, existing files are kept: re-running
    resumes), a grid.png of all of them and index.json (prompts, seeds, settings). Under torchrun or
    accelerate launch the prompts are sharded across processes (identical images) and rank 0 writes the
    grid and index."""
    from .generate import generate_to_dir
    from .images import load_png, save_grid
    from .outputs import write_generation_index

    if n < 1:
        raise SaceError(f"--n must be >= 1, got {n}")
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
    dist = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:   # started by torchrun / accelerate launch: shard the prompts
        from .distributed import DistContext
        dist = DistContext()
        device = device or str(dist.device)
    m = _load(ctx, model, device, adapter)
    adapters = [str(a) for a in adapter or []]
    t = time.perf_counter()
    s = _settings(guidance, temperature, top_k, top_p)
    if dist is not None:   # generate_sharded writes index.json on rank 0
        from .distributed import generate_sharded
        paths = generate_sharded(m, prompts, seeds, out, settings=s, negative_prompt=negative_prompt,
                                 batch_size=batch_size, ctx=dist, adapters=adapters)
        if not dist.is_main:
            return
    else:
        paths = generate_to_dir(m, prompts, seeds, out, settings=s, negative_prompt=negative_prompt,
                                batch_size=batch_size, progress=True)
        write_generation_index(out, model=m.name, prompts=prompts, seeds=seeds, paths=paths, settings=s.resolved(m),
                               negative_prompt=negative_prompt, adapters=adapters, batch_size=batch_size)
    secs = time.perf_counter() - t
    nrow = n if prompt and not prompts_file else min(8, len(paths))
    save_grid([load_png(p) for p in paths], nrow, Path(out) / "grid.png", upscale=1)
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
    if seeds < 1:
        raise SaceError("--seeds must be >= 1")
    from .models.text import check_prompts
    prompts, anchors = check_prompts(prompts), check_prompts(anchors)
    m = _load(ctx, model, device, adapter)
    from .evaluation.selection import detector_kind, issa_scorer
    score_fn, concept_name = issa_scorer(detector_kind(detector, m), concept, prompts[0])
    t = time.perf_counter()
    res = run_issa(m, prompts, anchors, [seed + i for i in range(seeds)], score_fn, concept=concept_name,
                   settings=_settings(guidance, temperature, top_k, top_p), progress=True)
    paths = write_issa_outputs(res, out, extra={"model": m.name, "adapters": [str(a) for a in adapter or []],
                                                "detector": detector})
    secs = time.perf_counter() - t
    sm = res.summary()
    c = _console()
    c.print(f"ISSA for '{concept_name}': S_0 = {sm['S0']:.3f} [{sm['S0_ci'][0]:.3f}, {sm['S0_ci'][1]:.3f}], "
            f"A(0) = {sm['A0']:.3f}, A(1) = {sm['A1']:.3f}, A(K) = {sm['AK']:.3f}, B(1) = {sm['B1']:.3f}, "
            f"scale-0 divergence share = {sm['divergence_share_scale0']:.3f}")
    c.print(f"{len(prompts)} pair(s) x {seeds} seeds in {res.passes} sampling pass(es): {res.seconds:.2f} s "
            f"(with plots {secs:.2f} s). Report: {paths.get('report')}")


@app.command()
def erase(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Concept name (fashion: a class key such as sneaker).")] = None,
    anchor: Annotated[str | None, typer.Option(help="Harmless anchor phrase/class replacing the concept "
                                                    "(fashion default: the nearest class).")] = None,
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
                                                  "prefix scales:0,1,..,k (loss at every gated scale). Default: "
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
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in OUT.")] = False,
    device: DeviceOpt = "",
) -> None:
    """Erase a concept with SACE into a scale-gated adapter folder (adapter.safetensors + adapter.json +
    train_log.json; a checkpoint every --checkpoint-every steps, --resume continues). Prints wall time and
    tokens per step. Defaults: METHOD.md §3 updated by the model's own (fashion: all six scales, see README)."""
    from .erasure.concepts import resolve_concept
    from .erasure.sace import default_sace_config
    from .erasure.sace import erase as run_erase

    m = _load(ctx, model, device, adapter)
    spec = resolve_concept(concept, anchor=anchor, targets=target or [], retain=retain or [],
                           concept_file=str(concept_file) if concept_file else None, domain=domains.name_of(m))
    cfg = default_sace_config(
        m, modules=[x.strip() for x in modules.split(",") if x.strip()] if modules else None, rank=rank,
        alpha=alpha, gate=gate, kind="full" if full else None, isolation=isolation, target=target_mode, seed=seed,
        checkpoint_every=checkpoint_every, lambda_h=lambda_h, lambda_pre=lambda_pre, mu=mu, steps=steps, lr=lr,
        batch_size=batch_size)
    out = out or Path(f"out/erase-{spec.name}")
    from .evaluation.cost import measure
    res, cost = measure(lambda: run_erase(m, spec, cfg, out_dir=out, resume=resume, progress=True), m.device)
    from .adapters import save_adapter
    res.adapter.metadata["peak_mb"] = cost.peak_mb
    save_adapter(res.adapter, out, model=m)
    last = res.log[-1] if res.log else {}
    _console().print(
        f"erased '{spec.name}' (anchor '{spec.anchor_name or '-'}') in {res.seconds:.1f} s "
        f"({cfg.steps} steps, {res.tokens_per_step} tokens/step, peak {cost.peak_mb or float('nan'):.0f} MB); "
        f"final L_ER {last.get('L_ER', float('nan')):.4f}, L_pre {last.get('L_pre', float('nan')):.4f}, "
        f"target scale-0 entropy {last.get('entropy_target', float('nan')):.3f} nats -> {out}")


@app.command()
def evaluate(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Erased concept (fashion: class key) -> ACC_e/ACC_i on the "
                                                     "built-in prompt sets.")] = None,
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
) -> None:
    """Evaluate erasure vs preservation vs cost on the same prompts and seeds for every method, in one table."""
    from .evaluation.runner import EvalRequest, parse_methods, run_evaluation
    from .outputs import write_evaluation
    from .reporting import Report
    from .reporting.sections import evaluation_section

    for a in adapter or []:
        if not Path(a).is_dir():
            raise SaceError(f"adapter folder not found: {a}")
    m = _load(ctx, model, device)
    req = EvalRequest(concept=concept, anchor=anchor, methods=parse_methods(methods, bool(adapter)),
                      adapters=[str(a) for a in adapter or []], prompts_file=str(prompts) if prompts else None,
                      categories=categories, limit=limit, detector=detector, nudenet_threshold=nudenet_threshold,
                      n_per_class=n_per_class, n_heldout=n_heldout, inception_images=inception_images,
                      batch_size=batch_size, settings=_settings(guidance, temperature, top_k, top_p),
                      sace_steps=sace_steps, baseline_steps=baseline_steps, seed=seed)
    t = time.perf_counter()
    rep = run_evaluation(m, req, out)
    write_evaluation(out, rep)
    page = Report(f"sace evaluate: {rep.concept.name if rep.concept else req.prompts_file}",
                  subtitle=f"model {m.name}, {rep.result.n_items} images per method")
    evaluation_section(page, rep.rows, rep.result.methods, out).write(out / "report.html")
    c = _console()
    c.print(rep.table_markdown)
    c.print(f"evaluated {len(rep.result.methods)} method(s) in {time.perf_counter() - t:.1f} s -> {out}/metrics.json, "
            f"{out}/table.md, {out}/report.html")


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


def main() -> None:
    """Entry point: run the typer app; user errors become one line and exit status 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SaceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
