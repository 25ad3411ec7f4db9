"""``sace erase`` (a method of the catalogue, SACE by default, into an adapter folder), ``sace audit`` (the
prompt sets on the frozen model) and ``sace concepts`` (the concept presets they accept)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .. import domains
from .. import validation as v
from ..adapters import check_gate, check_rank
from ..concepts.judge import Judge
from ..concepts.spec import write_prompt_sets
from ..erasure import catalogue
from ..erasure.audit import AuditConfig, AuditError, AuditResult, audit_concept, unchecked
from ..erasure.check import CheckThresholds
from ..erasure.checkpoints import RESUMABLE_FIELDS
from ..erasure.workflow import EraseOptions, check_n, erase_checked
from ..errors import SaceError
from ..folders import on_interrupt, open_output
from ..io import torch_load_weights, write_json
from ..reporting import markdown_table
from .common import comma_list, console, detector_help, load, output_record, show_judge
from .options import AdapterOpt, DeviceOpt, ForceOpt, ModelOpt, OtherBaseOpt


def _concept_spec(m, concept, anchor, target: list[str] | None, retain: list[str] | None,
                  concept_file: Path | None):
    """The concept of ``--concept`` / ``--anchor`` / ``--target`` / ``--retain`` / ``--concept-file`` in the
    domain of model ``m`` (a fashion class, a preset of ``sace concepts`` or a JSON definition), through the
    one resolver :func:`sace.domains.resolve_concept`.

    Raises:
        SaceError: an unknown concept or preset, or a bad concept file.
    """
    return domains.resolve_concept(m, concept, anchor=anchor, targets=target or [], retain=retain or [],
                                   concept_file=str(concept_file) if concept_file else None)


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
    method: Annotated[str, typer.Option(help="Trained method of the catalogue: " + ", ".join(
        catalogue.keys(trained=True)) + f" (default {catalogue.DEFAULT_METHOD}). The options below that a "
        "method has no field for are an error for it.")] = catalogue.DEFAULT_METHOD,
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
    detector: Annotated[str, typer.Option(help="Judge of the audit and the check: " + detector_help())] = "auto",
    check_images: Annotated[str, typer.Option(help="Post-training check: 'auto' = sequential (100, 200, 400, "
                                                   "800 images per set until every figure's 90% interval is on one "
                                                   "side of its line), N = one look at N images per set, 0 = no "
                                                   "check.")] = "auto",
    max_acc_e: Annotated[float, typer.Option(help="Check: pass if ACC_e <= this (fraction).")] = 0.05,
    max_heldout: Annotated[float, typer.Option(help="Check: pass if held-out ACC_e <= this.")] = 0.10,
    max_acc_i_drop: Annotated[float, typer.Option(help="Check: pass if ACC_i drops by <= this (fraction "
                                                       "points: 0.02 = 2 points).")] = 0.02,
    until_pass: Annotated[bool, typer.Option("--until-pass", help="Keep training (half the steps per round) "
                                                                  "until the check says PASS (same rule) or "
                                                                  "--max-steps.")
                          ] = False,
    max_steps: Annotated[int, typer.Option(help="Step budget of --until-pass (0 = 3 x --steps).")] = 0,
    gate_tol: Annotated[float, typer.Option(help="--gate auto: the smallest prefix of scales whose ISSA "
                                                 "late-injection residual B(k+1) is below this.")] = 0.1,
    device: DeviceOpt = "",
    force: ForceOpt = False,
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Erase a concept with SACE (or --method) into a scale-gated adapter folder (adapter.safetensors +
    adapter.json + train_log.json; a checkpoint every --checkpoint-every steps, --resume continues). Prints
    the judge, wall time and tokens per step. Defaults: METHOD.md §3 updated by the model's own (fashion: all
    six scales, see README)."""
    entry = catalogue.get(method, trained=True)
    # numeric options first: a bad value fails in a fraction of a second, not after loading the model
    for opt, val, lo in (("--rank", rank, 1), ("--steps", steps, 1), ("--batch-size", batch_size, 0),
                         ("--checkpoint-every", checkpoint_every, 1)):
        v.integer(opt, val, lo=lo)
    n_check = check_n(check_images)  # 'auto' (None) or N >= 0
    v.finite("--lr", lr, lo=0, lo_open=True)
    v.finite("--alpha", alpha, lo=0, lo_open=True)
    for opt, val in (("--lambda-h", lambda_h), ("--lambda-pre", lambda_pre), ("--mu", mu)):
        v.finite(opt, val, lo=0)
    v.seed("--seed", seed)
    if n_check is not None:
        v.count("--check-images", n_check, lo=0)
    v.integer("--max-steps", max_steps, lo=0)
    for opt, val in (("--max-acc-e", max_acc_e), ("--max-heldout", max_heldout), ("--max-acc-i-drop", max_acc_i_drop),
                     ("--gate-tol", gate_tol)):
        v.finite(opt, val, lo=0, hi=1)   # fractions: checked before the model loads, not after training
    if out is not None:
        v.output_dir(out)
    m = load(ctx, model, device, adapter, allow_other_base)
    spec = _concept_spec(m, concept, anchor, target, retain, concept_file)
    out = out or Path(f"out/erase-{v.path_name(spec.name)}")   # never a path from the concept's own name
    c = console()
    if dry_run:
        show_judge(c, m, spec, detector, without="nothing would be checked")   # what the audit and check would use
        path = write_prompt_sets(spec, out / "prompts.json")
        for k in ("targets", "anchors", "entangled", "retain", "heldout"):
            vals = getattr(spec, k)
            c.print(f"[bold]{k}[/bold] ({len(vals)}):", highlight=False)
            for prompt in vals:
                c.print(f"  {prompt}", highlight=False, markup=False)
        c.print(f"dry run: nothing trained; prompt sets written to {path}")
        return
    cfg = entry.make_config(
        m, modules=comma_list(modules) if modules else None, rank=rank, alpha=alpha, gate=gate,
        kind="full" if full else None, isolation=isolation, target=target_mode, seed=seed,
        checkpoint_every=checkpoint_every, lambda_h=lambda_h, lambda_pre=lambda_pre, mu=mu, steps=steps, lr=lr,
        batch_size=batch_size)
    v.check_train_config(cfg)
    if getattr(cfg, "gate", "auto") != "auto":
        check_gate(cfg.gate, m)
    if hasattr(cfg, "modules"):   # before the audit and the training, which attach the adapter
        check_rank(m, cfg.modules, getattr(cfg, "rank", None), "full" if full else "lora")
    v.output_dir(out)
    rec = output_record(m, adapter, concept=spec.name, concept_definition=spec.to_dict(), method=entry.key,
                        config={k: x for k, x in asdict(cfg).items() if k not in RESUMABLE_FIELDS})
    opts = EraseOptions(audit=not no_audit, check_images=check_images, detector=detector, until_pass=until_pass,
                        max_steps=max_steps, gate_tol=gate_tol,
                        thresholds=CheckThresholds(max_acc_e, max_heldout, max_acc_i_drop))
    owned = ("adapter.safetensors", "adapter.json", "train_log.json", "*_checkpoint.pt")
    with open_output(out, "erase", rec, owned, force=force) as folder, on_interrupt(lambda: _erase_note(out, cfg)):
        outcome = erase_checked(m, spec, cfg, opts, out_dir=out, resume=resume, progress=True,
                                say=lambda s: c.print(s, highlight=False, markup=False, soft_wrap=True),
                                method=entry.key)
        res = outcome.result
        peak = res.adapter.metadata.get("peak_mb")   # measured and written into the folder by erase_checked
        folder.complete(steps=cfg.steps)
    last = res.log[-1] if res.log else {}
    c.print(
        f"erased '{spec.name}' with {entry.label} (anchor '{spec.anchor_name or '-'}') in {res.seconds:.1f} s "
        f"({len(res.log)} steps, {res.tokens_per_step} tokens/step, peak {peak or float('nan'):.0f} MB); "
        f"final L_ER {last.get('L_ER', float('nan')):.4f}, L_pre {last.get('L_pre', float('nan')):.4f}, "
        f"target scale-0 entropy {last.get('entropy_target', float('nan')):.3f} nats -> {out}")
    base_tokens = (res.adapter.metadata.get("robust") or {}).get("sace_tokens_per_step")
    if base_tokens:   # the cost of robustness, in the unit that does not depend on the machine's load
        c.print(f"cost: {res.tokens_per_step / base_tokens:.2f}x plain SACE's transformer tokens per step "
                f"({res.tokens_per_step} vs {base_tokens}); wall-time ratios measured over ten classes are in the "
                f"README")
    if outcome.check is not None and outcome.check.passed is False:
        c.print("warning: the post-training check FAILED (see above); the adapter does not meet the thresholds")


def _erase_note(out: Path, cfg) -> str:
    """What an interrupted ``sace erase`` left behind and how to continue."""
    ck = next(iter(sorted(Path(out).glob("*_checkpoint.pt"))), None)
    if ck is not None:
        try:
            step = torch_load_weights(ck).get("step", "?")
        except SaceError:
            step = "?"
        return (f"the last checkpoint (step {step} of {cfg.steps}) is {ck}; run the same command with --resume "
                f"to continue")
    return (f"no checkpoint was written yet (one every {cfg.checkpoint_every} steps), nothing was saved in {out}; "
            f"run the command again")


def audit(
    ctx: typer.Context,
    concept: Annotated[str | None, typer.Option(help="Concept name (fashion: a class key such as sneaker).")] = None,
    anchor: Annotated[str | None, typer.Option(help="Anchor phrase/class (fashion default: the class's default "
                                                    "anchor).")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Target prompt (repeatable).")] = None,
    retain: Annotated[list[str] | None, typer.Option("--retain", help="Prompt to preserve (repeatable).")] = None,
    concept_file: Annotated[Path | None, typer.Option(help="JSON concept definition.")] = None,
    detector: Annotated[str, typer.Option(help=detector_help())] = "auto",
    images: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    out: Annotated[Path | None, typer.Option(help="Folder for audit.json (default: out/audit-CONCEPT).")] = None,
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "",
) -> None:
    """Audit a concept's prompt sets on the frozen model before training: anchors that draw the concept are an
    error, entangled/retain prompts that draw it are dropped, targets that do not draw it are a warning."""
    v.count("--images", images)
    if out is not None:
        v.output_dir(out)            # before loading and auditing, not after
    m = load(ctx, model, device, adapter)
    spec = _concept_spec(m, concept, anchor, target, retain, concept_file)
    out = out or Path(f"out/audit-{v.path_name(spec.name)}")
    v.output_dir(out)
    c = console()
    judge = show_judge(c, m, spec, detector)
    try:
        res = (audit_concept(m, spec, config=AuditConfig(images_per_prompt=images), judge=judge, progress=True)[0]
               if isinstance(judge, Judge) else AuditResult(spec.name, None, notes=[unchecked(judge)]))
    except AuditError as e:
        write_json(out / "audit.json", e.result.to_dict())
        for line in e.result.lines():
            c.print(line, highlight=False, markup=False)
        raise
    write_json(out / "audit.json", res.to_dict())
    for line in res.lines():
        c.print(line, highlight=False, markup=False)
    c.print(f"-> {out / 'audit.json'}")


def concepts() -> None:
    """List the concept presets for text-to-image models (sace/assets/concepts): prompt counts, the detector
    and the benchmark that score them. Use one with `sace erase --model infinity-2b --concept NAME`."""
    rows = [{"name": r["name"], "targets": r["targets"], "anchors": r["anchors"], "retain": r["retain"],
             "heldout": r["heldout"], "detector": r["detector"], "benchmark": r["benchmark"]}
            for r in domains.get(domains.PRESETS).describe()]
    console().print(markdown_table(rows))
