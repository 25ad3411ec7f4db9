"""``sace evaluate``: build the methods (original, given adapters, the catalogue's methods trained on the spot),
run the harness and return an :class:`EvaluationReport`; the caller writes it (:func:`sace.outputs.write_evaluation`).

The concept comes from the one resolver and the judge from the one ``--detector`` policy of the domain registry
(:func:`sace.domains.resolve_concept`, :func:`sace.domains.judge_for`); the methods from the catalogue
(:mod:`sace.erasure.catalogue`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import domains
from ..adapters import load_adapter, only_adapters
from ..concepts.items import items_from_prompt_set
from ..concepts.judge import Judge, NoDetector
from ..concepts.prompts import load_prompt_set
from ..concepts.spec import ConceptSpec
from ..erasure import catalogue
from ..erasure.audit import AuditResult
from ..erasure.check import CheckResult
from ..erasure.cost import measure
from ..errors import SaceError
from ..generate import SamplingSettings
from ..reporting.sections import comparison_markdown
from ..validation import check_eval_request, output_dir
from .benchmarks import prepare_benchmark
from .harness import EvaluationResult, Method, comparison_rows, evaluate


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
    benchmark: str | None = None            # i2p-sexual, imagenette, coco (sace.evaluation.benchmarks)
    prompts_dir: str | None = None          # folder of the benchmark CSVs (default: shared/data/prompts)
    reference_images: str | None = None     # coco: real images for FID/KID
    clip_model: str | None = None           # coco: CLIP hub id or local folder for CLIP score
    allow_other_base: bool = False   # adapters trained on other weights of the same-named model: warn only


def parse_methods(spec: str | Sequence[str] | None, has_adapters: bool) -> list[str]:
    """Method keys of ``--methods``: a comma list of the catalogue's keys, ``all`` or ``ablations``
    (:func:`sace.erasure.catalogue.select`), with ``original`` first; default: original (+ the given
    adapters)."""
    out = catalogue.select(spec)
    return out if "original" in out else ["original", *out]


def build_methods(model, req: EvalRequest, concept, progress: bool = True) -> list[Method]:
    """Instantiate every requested method on ``model`` (training the trained ones, timed), in table order:
    the original model, the given adapters, then the catalogue rows of ``req.methods``."""
    methods = [Method("original")]
    for i, folder in enumerate(req.adapters):
        ad = load_adapter(model, folder, name=f"given{i}", allow_other_base=req.allow_other_base)
        label = ad.metadata.get("method", "adapter")
        methods.append(Method(f"{label} ({Path(folder).name})", adapters=[ad.config.name],
                              cost=_cost_from_meta(ad.metadata)))
    for key in req.methods:
        if key == "original":
            continue
        if concept is None:
            raise SaceError(f"method {key!r} needs a concept (--concept)")
        entry = catalogue.get(key)
        only_adapters(model, [])
        if entry.trains:
            steps = req.baseline_steps if entry.baseline else req.sace_steps
            cfg = entry.make_config(model, seed=req.seed, steps=steps or None)
            res, cost = measure(lambda e=entry, cfg=cfg, key=key: e.train(model, concept, cfg, progress=progress,
                                                                          name=f"eval_{key}"), model.device)
            methods.append(Method(entry.label, adapters=[f"eval_{key}"], cost={
                **cost.to_dict(), "steps": res.steps, "tokens_per_step": res.tokens_per_step}))
        else:
            methods.append(_training_free(model, entry, concept))
    only_adapters(model, [])
    return methods


def _training_free(model, entry: catalogue.MethodEntry, concept: ConceptSpec) -> Method:
    """A training-free row as a harness method: its negative prompt and/or per-scale conditions."""
    neg = entry.negative_prompt(concept) if entry.negative_prompt else None
    return Method(entry.label,
                  conditions_fn=(lambda ps: entry.conditions(model, ps, concept)) if entry.conditions else None,
                  uncond_fn=(lambda ps: model.encode_prompts([neg] * len(ps))) if neg is not None else None,
                  cost={"seconds": 0.0, "steps": 0, "tokens_per_step": 0})


def _cost_from_meta(meta: dict) -> dict:
    return {"seconds": meta.get("train_seconds"), "steps": meta.get("steps"),
            "tokens_per_step": meta.get("tokens_per_step"), "peak_mb": meta.get("peak_mb"),
            "checks": _check_lines(meta)}


def _check_lines(meta: dict) -> list[str]:
    """The pre-training audit and post-training check that ``sace erase`` stored in ``adapter.json``, as
    the lines it printed (shown in the evaluation report)."""
    lines = []
    if meta.get("audit"):
        lines += AuditResult(**{k: v for k, v in meta["audit"].items() if k != "ok"}).lines()
    if meta.get("check"):
        lines.append(CheckResult(**meta["check"]).line())
    if meta.get("auto_gate"):
        lines.append(f"gate chosen from ISSA: {meta['auto_gate'].get('gate')} (B(k) = {meta['auto_gate'].get('B')})")
    return lines


@dataclass
class EvaluationReport:
    """What ``sace evaluate`` produced: the measured :class:`~sace.evaluation.harness.EvaluationResult`
    plus what it was measured for. Written by :func:`sace.outputs.write_evaluation` (``metrics.json``,
    ``table.md``, ``table.html``) and shown by :func:`sace.reporting.sections.evaluation_section`."""

    result: EvaluationResult
    concept: ConceptSpec | None
    detector: str
    """The judge's ``--detector`` kind (``"fashion"``, ``"nudenet"``, ...), the benchmark's name, or ``"none"``."""
    rows: list[dict]
    """The comparison table, one row per method (:func:`~sace.evaluation.harness.comparison_rows`)."""
    benchmark: dict | None = None
    """``--benchmark``'s facts (prompt file, count, detector, threshold, ...; :mod:`sace.evaluation.benchmarks`)."""
    judge: Judge | NoDetector | None = field(default=None, repr=False)
    """The judge every method was scored with, or why there was none (not part of ``metrics.json``)."""

    @property
    def table_markdown(self) -> str:
        return comparison_markdown(self.rows)

    def metrics(self) -> dict:
        """The ``metrics.json`` content: methods, settings, n_items, groups, concept, detector and the
        Markdown table."""
        out = {**self.result.to_dict(), "concept": self.concept.to_dict() if self.concept else None,
               "detector": self.detector, "table_markdown": self.table_markdown}
        if self.benchmark is not None:
            out["benchmark"] = self.benchmark
        return out


def run_evaluation(model, req: EvalRequest, out_dir: str | os.PathLike, progress: bool = True) -> EvaluationReport:
    """Everything ``sace evaluate`` measures: resolve the concept, judge and prompt set, build and train the
    methods, generate and score every item with every method (grids go to ``out_dir/grids``).

    Raises:
        SaceError: unknown concept, detector or method; nothing to evaluate; a bad number in ``req``; an
            output folder that is a file, under a file or not writable.
    """
    check_eval_request(req)
    out = output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    domain = domains.for_model(model)
    concept = domains.resolve_concept(model, req.concept, anchor=req.anchor) if req.concept else None
    bench = prepare_benchmark(model, req, concept) if req.benchmark else None  # its prompts, seeds, judge, metrics
    judge: Judge | NoDetector | None = None
    if bench is not None:
        judge = bench.judge
    else:
        try:
            judge = domains.judge_for(model, concept, req.detector, threshold=req.nudenet_threshold)
        except NoDetector as e:
            judge = e
    scorer = judge if isinstance(judge, Judge) else None
    real, feats, erased, neighbours = None, None, [], []
    own = domains.DOMAINS.get(scorer.kind) if scorer is not None and bench is None else None
    if own is not None and own.own_detector:   # a domain's classifier: real images for KID, neighbour classes
        real = own.real_images(100, seed=req.seed)
        feats = own.feature_model()
        if concept is not None:
            erased, neighbours = own.neighbours(concept)
    class_names = list(scorer.classes) if scorer is not None and scorer.classes else None
    if bench is not None:
        items, erased = bench.items, bench.erased
    elif req.prompts_file:
        ps = load_prompt_set(req.prompts_file, categories=req.categories, limit=req.limit, skip_empty=True)
        items = items_from_prompt_set(ps, class_names)
    elif concept is not None:
        items = domain.eval_items(concept, req.n_per_class, req.n_heldout, seed0=req.seed)
    else:
        raise SaceError("nothing to evaluate: give --concept (built-in concept sets) or --prompts FILE")
    methods = build_methods(model, req, concept, progress)
    result = evaluate(model, methods, items, judge=scorer, erased=erased, neighbours=neighbours,
                      settings=req.settings, batch_size=req.batch_size, real=real, feature_model=feats,
                      inception_images=req.inception_images, out_dir=out, progress=progress,
                      image_metrics=bench.image_metrics if bench else None)
    kind = bench.name if bench is not None else (scorer.kind if scorer is not None else "none")
    return EvaluationReport(result, concept, kind, comparison_rows(result, class_names, neighbours),
                            bench.info if bench else None, judge)
