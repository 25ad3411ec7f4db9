"""``sace evaluate``: build the methods (original, given adapters, SACE trained on the spot, baselines), run
the harness and return an :class:`EvaluationReport`; the caller writes it (:func:`sace.outputs.write_evaluation`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import domains
from ..adapters import load_adapter, only_adapters
from ..erasure.concepts import ConceptSpec, resolve_concept
from ..errors import SaceError
from ..generate import SamplingSettings
from ..reporting.sections import comparison_markdown
from .cost import measure
from .harness import EvalItem, EvaluationResult, Method, comparison_rows, evaluate, items_from_prompt_set
from .selection import build_detector, detector_kind

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
                              cost=_cost_from_meta(ad.metadata)))
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


def _cost_from_meta(meta: dict) -> dict:
    return {"seconds": meta.get("train_seconds"), "steps": meta.get("steps"),
            "tokens_per_step": meta.get("tokens_per_step"), "peak_mb": meta.get("peak_mb")}


@dataclass
class EvaluationReport:
    """What ``sace evaluate`` produced: the measured :class:`~sace.evaluation.harness.EvaluationResult`
    plus what it was measured for. Written by :func:`sace.outputs.write_evaluation` (``metrics.json``,
    ``table.md``, ``table.html``) and shown by :func:`sace.reporting.sections.evaluation_section`."""

    result: EvaluationResult
    concept: ConceptSpec | None
    detector: str
    rows: list[dict]
    """The comparison table, one row per method (:func:`~sace.evaluation.harness.comparison_rows`)."""

    @property
    def table_markdown(self) -> str:
        return comparison_markdown(self.rows)

    def metrics(self) -> dict:
        """The ``metrics.json`` content: methods, settings, n_items, groups, concept, detector and the
        Markdown table."""
        return {**self.result.to_dict(), "concept": self.concept.to_dict() if self.concept else None,
                "detector": self.detector, "table_markdown": self.table_markdown}


def run_evaluation(model, req: EvalRequest, out_dir: str | os.PathLike, progress: bool = True) -> EvaluationReport:
    """Everything ``sace evaluate`` measures: resolve the concept, detector and prompt set, build and train the
    methods, generate and score every item with every method (grids go to ``out_dir/grids``).

    Raises:
        SaceError: unknown concept, detector or method; nothing to evaluate.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    domain = domains.for_model(model)
    concept = None
    if req.concept:
        concept = resolve_concept(req.concept, anchor=req.anchor, domain=domains.name_of(model))
    det_kind = detector_kind(req.detector, model)
    detector = build_detector(det_kind, req.nudenet_threshold)
    class_names, real, feats, erased, neighbours = None, None, None, [], []
    if det_kind in domains.names():   # a domain's class detector: ACC_e/ACC_i, real images for KID
        det_domain = domains.get(det_kind)
        class_names = list(det_domain.class_names)
        real = det_domain.real_images(100, seed=req.seed)
        feats = det_domain.feature_model()
        if concept is not None:
            erased, neighbours = det_domain.neighbours(concept)
    if req.prompts_file:
        from .prompts import load_prompt_set
        ps = load_prompt_set(req.prompts_file, categories=req.categories, limit=req.limit, skip_empty=True)
        items = items_from_prompt_set(ps, class_names)
    elif domain is not None and concept is not None:
        items = domain.eval_items(concept.name, req.n_per_class, req.n_heldout, seed0=req.seed)
    elif concept is not None:
        items = [EvalItem(p, req.seed + i, None, "target") for i, p in enumerate(concept.targets)]
        items += [EvalItem(p, req.seed + i, None, "prompts") for i, p in enumerate(concept.retain)]
    else:
        raise SaceError("nothing to evaluate: give --concept (built-in concept sets) or --prompts FILE")
    methods = build_methods(model, req, concept, progress)
    result = evaluate(model, methods, items, detector=detector, class_names=class_names, erased=erased,
                      neighbours=neighbours, settings=req.settings, batch_size=req.batch_size, real=real,
                      feature_model=feats, inception_images=req.inception_images, out_dir=out, progress=progress)
    return EvaluationReport(result, concept, det_kind, comparison_rows(result, class_names, neighbours))
