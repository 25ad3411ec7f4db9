"""The field's erasure benchmarks behind one flag: ``sace evaluate --benchmark i2p-sexual|imagenette|coco``.

Protocols (``shared/docs/related-work.md`` §6; prompt files of ``rohitgandikota/erasing`` copied to
``shared/data/prompts``):

* ``i2p-sexual`` -- the 931 prompts of I2P (``unsafe-prompts4703.csv``) whose ``categories`` contain
  ``sexual``, each generated with its ``evaluation_seed``; NudeNet 3.4.2 detections counted per exposed class
  at a score threshold (0.6 as in ScaleErasure, a parameter), sensitive/common totals and the share of
  images with an exposed detection (ASR).
* ``imagenette`` -- the 100 prompts ``Image of {class}`` of ``small_imagenet_prompts.csv`` (10 classes x 10
  seeds); top-1 of the EfficientNet-Lite0 ImageNet classifier (:mod:`sace.concepts.imagenet`); ACC_e on
  the erased class (lower is better), ACC_i the mean accuracy over the other nine (higher is better).
* ``coco`` -- the first N captions of ``coco_30k.csv`` with their seeds; FID/KID with the offline TF-FID
  Inception (:mod:`sace.evaluation.metrics`) against real images given with ``--reference-images`` or,
  without them, against the original model's images on the same captions and seeds (reported as
  ``fid_to_original`` / ``kid_to_original``: a measure of change, not of realism); CLIP score
  (:mod:`sace.evaluation.clip_score`) when CLIP weights are given (``--clip-model``).

``limit`` keeps the first N prompts; for Imagenette the prompts are interleaved across the ten classes
first (seed 1 of every class, then seed 2, ...), so that a quick look covers several classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..concepts.imagenet import IMAGENETTE
from ..concepts.items import EvalItem
from ..concepts.judge import Judge, imagenet_judge, nudenet_judge
from ..concepts.nudenet import NUDENET_EXPOSED
from ..concepts.prompts import PromptSet, load_prompt_set
from ..errors import SaceError
from ..images import open_rgb
from .clip_score import CLIPScorer
from .quality import InceptionFeatures, extract_features, fid_kid

__all__ = ["BENCHMARKS", "BenchmarkSetup", "prompts_dir", "load_benchmark_prompts", "imagenette_items",
           "prepare_benchmark"]

#: benchmark -> (prompt file, what it measures)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "i2p-sexual": ("unsafe-prompts4703.csv", "NudeNet exposed-class counts on I2P's 931 sexual prompts"),
    "imagenette": ("small_imagenet_prompts.csv", "EfficientNet-Lite0 top-1: ACC_e on the erased class, ACC_i "
                                                 "on the other nine"),
    "coco": ("coco_30k.csv", "FID/KID (offline Inception) and CLIP score on COCO-30k captions"),
}


def prompts_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding the standard prompt CSVs: ``explicit``, else ``$SACE_PROMPTS_DIR``, else the first
    ``shared/data/prompts`` found from the working directory or beside the sace checkout.

    Raises:
        SaceError: none of them exists (the message says how to point at the files).
    """
    cands = [Path(explicit)] if explicit else []
    if os.environ.get("SACE_PROMPTS_DIR"):
        cands.append(Path(os.environ["SACE_PROMPTS_DIR"]))
    if not explicit:
        here = Path(__file__).resolve()
        for base in (Path.cwd(), Path.cwd().parent, here.parents[3], here.parents[3].parent):
            cands.append(base / "shared" / "data" / "prompts")
    for c in cands:
        if (c / "unsafe-prompts4703.csv").is_file() or (c / "small_imagenet_prompts.csv").is_file():
            return c
    raise SaceError(f"prompt folder not found (tried {', '.join(str(c) for c in cands)}); pass --prompts-dir "
                    "with the CSVs of rohitgandikota/erasing data/ (unsafe-prompts4703.csv, "
                    "small_imagenet_prompts.csv, coco_30k.csv) or set SACE_PROMPTS_DIR")


def _check_name(name: str) -> str:
    key = name.strip().lower()
    if key not in BENCHMARKS:
        raise SaceError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return key


def load_benchmark_prompts(name: str, limit: int | None = None, folder: str | os.PathLike | None = None
                           ) -> PromptSet:
    """The benchmark's prompts, seeds and labels (see the module docstring for the selection).

    Raises:
        SaceError: unknown benchmark, prompt folder or file missing, ``limit`` < 1.
    """
    key = _check_name(name)
    if limit is not None and limit < 1:
        raise SaceError(f"--limit must be >= 1, got {limit}")
    path = prompts_dir(folder) / BENCHMARKS[key][0]
    if key == "i2p-sexual":
        return load_prompt_set(path, categories="sexual", limit=limit, skip_empty=True, name="i2p-sexual")
    if key == "coco":
        return load_prompt_set(path, limit=limit, name="coco")
    ps = load_prompt_set(path, label_column="class", name="imagenette")
    rank: dict[str, int] = {}
    order = []
    for i, lab in enumerate(ps.labels or []):
        order.append((rank.get(lab, 0), list(dict.fromkeys(ps.labels)).index(lab), i))
        rank[lab] = rank.get(lab, 0) + 1
    idx = [i for _, _, i in sorted(order)]
    return ps.subset(idx[:limit] if limit else idx)


def imagenette_items(ps: PromptSet, erased: Sequence[int] = ()) -> list[EvalItem]:
    """Items of the Imagenette prompts: label = ImageNet index of the prompt's class, group ``target`` for the
    erased class(es), ``other`` for the rest.

    Raises:
        SaceError: a class not among the ten Imagenette classes.
    """
    items = []
    for p, s, lab in zip(ps.prompts, ps.seeds or range(len(ps)), ps.labels or [""] * len(ps)):
        key = lab.strip().lower()
        if key not in IMAGENETTE:
            raise SaceError(f"class {lab!r} of {ps.source} is not an Imagenette class ({', '.join(IMAGENETTE)})")
        c = IMAGENETTE[key]
        items.append(EvalItem(p, int(s), c, "target" if c in erased else "other"))
    return items


@dataclass
class BenchmarkSetup:
    """What the evaluation harness needs for one benchmark.

    Attributes:
        name: the benchmark. items: prompts, seeds, labels, groups. judge: what scores the images (NudeNet;
            the ImageNet classifier, whose classes give ACC_e/ACC_i) or None (COCO). erased: erased class indices.
        image_metrics: ``(method, images, items) -> dict`` run on every method's images (COCO: FID/KID, CLIP
            score). info: facts for metrics.json.
    """

    name: str
    items: list[EvalItem]
    judge: Judge | None = None
    erased: list[int] = field(default_factory=list)
    image_metrics: Callable[[str, Tensor, Sequence[EvalItem]], dict] | None = None
    info: dict = field(default_factory=dict)


def _erased_imagenette_class(concept) -> list[int]:
    if concept is None:
        return []
    key = concept.name.replace("_", " ").strip().lower()
    if key not in IMAGENETTE:
        raise SaceError(f"concept {concept.name!r} is not an Imagenette class; the imagenette benchmark erases "
                        f"one of {', '.join(k.replace(' ', '_') for k in IMAGENETTE)}")
    return [IMAGENETTE[key]]


class _CocoMetrics:
    """FID/KID against real images (or the first method's images) and CLIP score, per method."""

    def __init__(self, reference: Tensor | None, clip=None, device="cpu") -> None:
        self.inception = InceptionFeatures().to(device)
        self.ref_feats = None if reference is None else self._feats(reference)
        self.has_real = reference is not None
        self.clip = clip

    def _feats(self, images: Tensor) -> Tensor:
        return extract_features(images, self.inception, batch_size=16)

    def __call__(self, method: str, images: Tensor, items: Sequence[EvalItem]) -> dict:
        r: dict = {}
        feats = self._feats(images)
        if self.clip is not None:
            r["clip_score"] = self.clip.score(images, [it.prompt for it in items])
            r["clip_model"] = self.clip.name
        if self.ref_feats is None:        # first method: it becomes the reference of the others
            self.ref_feats = feats
            return r
        fk = fid_kid(self.ref_feats, feats, subset_size=min(100, len(feats), len(self.ref_feats)), num_subsets=50)
        if self.has_real:
            r.update(fid_inception=fk["fid"], kid_inception=fk["kid_mean"], kid_inception_std=fk["kid_std"])
        else:
            r.update(fid_to_original=fk["fid"], kid_to_original=fk["kid_mean"], kid_to_original_std=fk["kid_std"])
        return r


def _load_reference_images(folder: str | os.PathLike, size: int = 299, limit: int | None = None) -> Tensor:
    """Real images of a folder (PNG/JPEG), centre-cropped and resized to ``size`` px: ``(N, 3, size, size)``
    uint8."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if limit:
        files = files[:limit]
    if len(files) < 2:
        raise SaceError(f"--reference-images {folder} needs at least 2 PNG/JPEG images, found {len(files)}")
    out = []
    for f in files:
        im = open_rgb(f, "--reference-images file")
        s = min(im.size)
        im = im.crop(((im.width - s) // 2, (im.height - s) // 2, (im.width + s) // 2, (im.height + s) // 2))
        out.append(torch.from_numpy(np.asarray(im.resize((size, size), Image.BICUBIC))).permute(2, 0, 1))
    return torch.stack(out)


def check_applies(model, key: str) -> None:
    """The standard benchmarks score text-to-image models of the presets domain (Infinity-2B/8B, a model
    folder without a ``domain``, the VAR models); a model with a domain of its own (``fashion``: 28 px
    garments) cannot draw their prompts, and its scores would be meaningless zeros.

    Raises:
        SaceError: one line naming the benchmark, the model's domain and the models it applies to.
    """
    dom = getattr(getattr(model, "spec", None), "domain", None)   # model.json's domain (evaluation sits below
    if dom is not None and dom != "presets":                      # sace.domains, so it reads the field itself)
        raise SaceError(f"--benchmark {key} applies to text-to-image models without a domain of their own "
                        f"(infinity-2b, infinity-8b, var-d16..d30, model folders without 'domain'); model "
                        f"{getattr(model, 'name', '?')!r} is of the {dom!r} domain: drop --benchmark and use "
                        f"--concept CLASS")


def prepare_benchmark(model, req, concept) -> BenchmarkSetup:
    """Prompts, detector and metrics of ``req.benchmark`` for ``sace evaluate``.

    Args:
        model: the loaded model (its device runs the detectors that use torch).
        req: an :class:`~sace.evaluation.runner.EvalRequest` (``benchmark``, ``limit``, ``nudenet_threshold``,
            ``prompts_dir``, ``reference_images``, ``clip_model``).
        concept: the erased :class:`~sace.concepts.spec.ConceptSpec` or None (original model only).

    Raises:
        SaceError: unknown benchmark, missing prompt files or detector packages, a concept that the benchmark
            cannot score (imagenette: not an Imagenette class), ``--prompts``/``--categories`` given too.
    """
    key = _check_name(req.benchmark)
    check_applies(model, key)
    if getattr(req, "prompts_file", None) or getattr(req, "categories", None):
        raise SaceError("--benchmark brings its own prompts; drop --prompts/--categories (or drop --benchmark)")
    ps = load_benchmark_prompts(key, req.limit, getattr(req, "prompts_dir", None))
    info = {"benchmark": key, "prompt_file": ps.source, "n_prompts": len(ps), "description": BENCHMARKS[key][1]}
    dev = getattr(model, "device", "cpu")
    if key == "i2p-sexual":
        items = [EvalItem(p, int(s) % (2**63), None, "prompts") for p, s in zip(ps.prompts, ps.seeds)]
        if concept is not None:   # training prompts that are also benchmark prompts (the nudity preset's I2P rows)
            info["overlap_with_concept_targets"] = len(set(ps.prompts) & set(concept.targets))
        judge = nudenet_judge(concept.name if concept else None, threshold=req.nudenet_threshold)
        info.update(detector="nudenet 3.4.2 (320n)", threshold=float(req.nudenet_threshold),
                    counted_classes=list(NUDENET_EXPOSED))
        return BenchmarkSetup(key, items, judge, info=info)
    if key == "imagenette":
        erased = _erased_imagenette_class(concept)
        judge = imagenet_judge(concept.name if concept else None, device=dev, index=erased)
        info.update(detector="efficientnet-lite0 (ImageNet-1k top-1)", erased=erased)
        return BenchmarkSetup(key, imagenette_items(ps, erased), judge, erased, info=info)
    items = [EvalItem(p, int(s), None, "prompts") for p, s in zip(ps.prompts, ps.seeds or range(len(ps)))]
    ref = getattr(req, "reference_images", None)
    clip = None
    if getattr(req, "clip_model", None):
        clip = CLIPScorer(req.clip_model, device=dev)
    reference = _load_reference_images(ref) if ref else None
    info.update(fid_reference=str(ref) if ref else "original model, same captions and seeds",
                clip_model=clip.name if clip else None)
    return BenchmarkSetup(key, items, None, image_metrics=_CocoMetrics(reference, clip, dev), info=info)
