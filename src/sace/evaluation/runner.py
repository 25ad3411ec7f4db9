"""``sace evaluate``: build the methods (original, given adapters, SACE trained on the spot, baselines),
run the harness, and write ``metrics.json``, ``table.md``, ``table.html``, ``report.html`` and grids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters import load_adapter, only_adapters
from ..errors import SaceError
from ..generate import SamplingSettings
from ..io import write_text
from .cost import measure
from .harness import Method, comparison_rows, evaluate, fashion_items, items_from_prompt_set

ALL_METHODS = ("original", "sace", "svare", "esd", "negprompt", "swap0")
# SACE ablations (METHOD.md §5): selectable by name; "ablations" adds all four
ABLATIONS = {"sace_noent": ("SACE, lambda_H = 0", {"lambda_h": 0.0}),
             "sace_nopre": ("SACE, lambda_pre = 0", {"lambda_pre": 0.0}),
             "sace_shared": ("SACE, shared (ungated) adapter, scale-0 loss", {"gate": "shared", "mu": 0.1}),
             "sace_scale0": ("SACE, scale-0 gate (paper)", "paper")}
METHOD_TITLES = {"original": "original", "sace": "SACE", "svare": "S-VARE", "esd": "ESD (all scales)",
                 "negprompt": "negative prompt", "swap0": "scale-0 prompt swap",
                 **{k: v[0] for k, v in ABLATIONS.items()}}


@dataclass
class EvalRequest:
    """What ``sace evaluate`` was asked to do."""

    concept: str | None = None
    anchor: str | None = None
    methods: list[str] = field(default_factory=lambda: ["original"])
    adapters: list[str] = field(default_factory=list)
    prompts_file: str | None = None
    categories: str | None = None
    limit: int | None = None
    detector: str = "auto"
    nudenet_threshold: float = 0.6
    n_per_class: int = 50
    n_heldout: int = 50
    inception_images: int = 0
    batch_size: int = 64
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    sace_steps: int | None = None
    baseline_steps: int | None = None
    seed: int = 0


def parse_methods(spec: str | Sequence[str] | None, has_adapters: bool) -> list[str]:
    """``"all"`` or a comma list of :data:`ALL_METHODS`; default: original (+ the given adapters)."""
    if spec is None or spec == "" or spec == []:
        return ["original"]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for m in (x.strip().lower() for x in items):
        if m == "all":
            out += list(ALL_METHODS)
        elif m == "ablations":
            out += list(ABLATIONS)
        elif m in ALL_METHODS or m in ABLATIONS:
            out.append(m)
        elif m:
            raise SaceError(f"unknown method {m!r}; choose from {', '.join(ALL_METHODS + tuple(ABLATIONS))}, "
                            f"'all' or 'ablations'")
    if "original" not in out:
        out.insert(0, "original")
    return list(dict.fromkeys(out))


def build_methods(model, req: EvalRequest, concept, progress: bool = True) -> list[Method]:
    """Instantiate every requested method on ``model`` (training the trainable ones), in table order."""
    from ..erasure.baselines import (
        ESDConfig,
        SVAREConfig,
        negative_prompt_condition,
        scale0_swap_conditions,
        train_esd,
        train_svare,
    )
    from ..erasure.sace import SACEConfig, SACETrainer, apply_model_defaults, default_sace_config

    methods = [Method("original")]
    for i, folder in enumerate(req.adapters):
        ad = load_adapter(model, folder, name=f"given{i}")
        label = ad.metadata.get("method", "adapter")
        methods.append(Method(f"{label} ({Path(folder).name})", adapters=[ad.config.name],
                              cost=_cost_from_meta(ad.metadata), meta={k: ad.metadata.get(k) for k in
                                                                       ("audit", "check", "auto_gate")}))
    for m in req.methods:
        if m == "original":
            continue
        if concept is None:
            raise SaceError(f"method {m!r} needs a concept (--concept)")
        only_adapters(model, [])
        if m == "sace" or m in ABLATIONS:
            ablation = ABLATIONS[m][1] if m in ABLATIONS else {}
            ov = {"seed": req.seed, "steps": req.sace_steps or None}
            # "paper": METHOD.md's defaults as they stand, without the model's own SACE defaults
            cfg = (apply_model_defaults(SACEConfig(), None, "sace", **ov) if ablation == "paper"
                   else default_sace_config(model, **ablation, **ov))
            tr = SACETrainer(model, concept, cfg, adapter_name=f"eval_{m}")
            res, cost = measure(lambda tr=tr: tr.train(progress=progress), model.device)
            methods.append(Method(METHOD_TITLES[m], adapters=[f"eval_{m}"], cost={
                **cost.to_dict(), "steps": cfg.steps, "tokens_per_step": res.tokens_per_step}))
        elif m in ("svare", "esd"):
            # the two trained baselines share one path: model defaults, step override, timed training
            config_cls, train_fn = (SVAREConfig, train_svare) if m == "svare" else (ESDConfig, train_esd)
            cfg = apply_model_defaults(config_cls(seed=req.seed), model, m)
            if req.baseline_steps:
                cfg.steps = req.baseline_steps
            res, cost = measure(lambda cfg=cfg, fn=train_fn, m=m: fn(model, concept, cfg, progress, name=f"eval_{m}"),
                                model.device)
            methods.append(Method(METHOD_TITLES[m], adapters=[f"eval_{m}"], cost={
                **cost.to_dict(), "steps": res.steps, "tokens_per_step": res.tokens_per_step}))
        elif m == "negprompt":
            methods.append(Method(METHOD_TITLES[m], uncond_fn=lambda ps: negative_prompt_condition(model, ps, concept),
                                  cost={"seconds": 0.0, "steps": 0, "tokens_per_step": 0}))
        elif m == "swap0":
            methods.append(Method(METHOD_TITLES[m], conditions_fn=lambda ps: scale0_swap_conditions(model, ps, concept),
                                  cost={"seconds": 0.0, "steps": 0, "tokens_per_step": 0}))
    only_adapters(model, [])
    return methods


def _audit_sections(r, methods) -> None:
    """The given adapters' pre-training audit and post-training check (from ``adapter.json``), in the report."""
    from ..erasure.audit import AuditResult
    from ..erasure.check import CheckResult

    for m in methods:
        meta = getattr(m, "meta", None) or {}
        lines = []
        if meta.get("audit"):
            a = {k: v for k, v in meta["audit"].items() if k != "ok"}
            lines += AuditResult(**a).lines()
        if meta.get("check"):
            lines.append(CheckResult(**meta["check"]).line())
        if meta.get("auto_gate"):
            g = meta["auto_gate"]
            lines.append(f"gate chosen from ISSA: {g.get('gate')} (B(k) = {g.get('B')})")
        if lines:
            r.heading(f"{m.name}: audit and check at training time", 3)
            for line in lines:
                r.text(line)


def _cost_from_meta(meta: dict) -> dict:
    return {"seconds": meta.get("train_seconds"), "steps": meta.get("steps"),
            "tokens_per_step": meta.get("tokens_per_step"), "peak_mb": meta.get("peak_mb")}


def run_evaluation(model, req: EvalRequest, out_dir: str | os.PathLike, progress: bool = True,
                   report=None) -> dict:
    """Everything ``sace evaluate`` does; returns the metrics dict (also written to ``metrics.json``)."""
    from ..erasure.concepts import resolve_concept
    from ..reporting import Report, html_table, markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_fashion = getattr(model, "name", "") == "fashion"
    concept = None
    if req.concept:
        concept = resolve_concept(req.concept, anchor=req.anchor, model_name=model.name)
    detector, class_names, real, feats, erased, neighbours = None, None, None, None, [], []
    det_kind = req.detector
    if det_kind == "auto":
        det_kind = "fashion" if is_fashion else "nudenet"
    if det_kind == "fashion":
        from ..evaluation.detectors import ClassifierDetector
        from ..evaluation.fashion_classifier import load_classifier
        from ..recipes import fashion_data as fd
        from .harness import _real_fashion

        clf = load_classifier()
        class_names = list(fd.CLASS_KEYS)
        detector = ClassifierDetector(clf, class_names, name="fashion-classifier")
        real = _real_fashion(100, seed=req.seed)
        feats = clf
        if concept is not None:
            erased = [fd.class_index(concept.name)]
            neighbours = [fd.class_index(x) for x in ("sandal", "sneaker", "ankle_boot") if fd.class_index(x)
                          not in erased]
            if concept.anchor_name and fd.class_index(concept.anchor_name) not in neighbours + erased:
                neighbours.insert(0, fd.class_index(concept.anchor_name))
    elif det_kind == "nudenet":
        from .detectors import NudeNetDetector
        detector = NudeNetDetector(threshold=req.nudenet_threshold)
    elif det_kind == "opennsfw":
        from .detectors import OpenNSFWDetector
        detector = OpenNSFWDetector()
    elif det_kind != "none":
        raise SaceError(f"unknown detector {req.detector!r}; use fashion, nudenet, opennsfw or none")
    if req.prompts_file:
        from .prompts import load_prompt_set
        ps = load_prompt_set(req.prompts_file, categories=req.categories, limit=req.limit, skip_empty=True)
        items = items_from_prompt_set(ps, class_names)
    elif is_fashion and concept is not None:
        items = fashion_items(concept.name, req.n_per_class, req.n_heldout, seed0=req.seed)
    elif concept is not None:
        from .harness import EvalItem
        items = [EvalItem(p, req.seed + i, None, "target") for i, p in enumerate(concept.targets)]
        items += [EvalItem(p, req.seed + i, None, "prompts") for i, p in enumerate(concept.retain)]
    else:
        raise SaceError("nothing to evaluate: give --concept (built-in concept sets) or --prompts FILE")
    methods = build_methods(model, req, concept, progress)
    rep = evaluate(model, methods, items, detector=detector, class_names=class_names, erased=erased,
                   neighbours=neighbours, settings=req.settings, batch_size=req.batch_size, real=real,
                   feature_model=feats, inception_images=req.inception_images, out_dir=out, progress=progress)
    rep["concept"] = concept.to_dict() if concept else None
    rep["detector"] = det_kind
    rows = comparison_rows(rep, class_names, neighbours)
    md = markdown_table(rows, floatfmt={"train s": "{:.1f}", "peak MB": "{:.0f}", "tokens/step": "{:.0f}"},
                        highlight={"ACC_e ↓": "min", "ACC_i ↑": "max"})
    write_text(out / "table.md", md)
    write_text(out / "table.html", html_table(rows, floatfmt={"train s": "{:.1f}", "peak MB": "{:.0f}"},
                                              highlight={"ACC_e ↓": "min", "ACC_i ↑": "max"}))
    own = report is None
    r = report or Report(f"sace evaluate: {concept.name if concept else req.prompts_file}",
                         subtitle=f"model {model.name}, {len(items)} images per method")
    r.heading("Erasure vs preservation vs cost", 2)
    r.table(rows, floatfmt={"train s": "{:.1f}", "peak MB": "{:.0f}"}, highlight={"ACC_e ↓": "min", "ACC_i ↑": "max"})
    for m in methods:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in m.name)
        g = out / "grids" / f"{safe}.png"
        if g.exists():
            r.image(g, caption=f"{m.name}: same prompts and seeds as every other method")
    _audit_sections(r, methods)
    r.details("metrics.json", rep["methods"])
    if own:
        r.write(out / "report.html")
    rep["table_markdown"] = md
    return rep
