"""ISSA -- Incremental Semantic Saliency Analysis: where in the scale pyramid a concept enters generation
(``shared/docs/METHOD.md`` §2; the paper, arXiv 2606.15819, names ISSA but publishes no algorithm -- this is
the project's reconstruction).

**ISSA-swap (behavioural).** For a concept prompt c* and its anchor c, with the same seed and RNG stream:

* commitment curve ``A(k)``, k = 0..K: c* at scales < k, c at scales >= k (A(0) = anchor image, A(K) = concept
  image), scored by a concept detector P;
* incremental saliency ``S_k = (A(k+1) - A(k)) / (A(K) - A(0))``, k = 0..K-1 (the axiom predicts S_0 ~ 1);
* late-injection curve ``B(k)``: c at scales < k, c* at scales >= k (the axiom predicts B(1) ~ A(0)).

All 2K distinct runs of a (pair, seed) share one sampling pass: two trunks (c* and c) are forked at every
switch scale, so the common prefix of the conditions is computed once (:func:`sace.sampling.sample`, ``fork``).
Means and 95% bootstrap intervals are taken over pairs x seeds.

**ISSA-logit (white box).** One pyramid sampled under c* is teacher-forced under c* and under c with the same
guidance; per scale and token, the Jensen-Shannon divergence of the two guided distributions and the
fraction of token factors (bits) whose argmax differs, both from the model's token kind; per-scale means, the
share of the total divergence, and per-token maps
(``h_k x w_k``) for heat maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .errors import SaceError
from .generate import SamplingSettings
from .io import write_json
from .models.base import Condition
from .models.text import check_prompts
from .reporting import Report, plot_bars, plot_curves, plot_heatmaps, save_grid
from .sampling import make_generators, sample
from .validation import seeds as check_seeds


@dataclass
class ISSAResult:
    """Everything ISSA measured (all lists are per scale k; shapes in the field comments)."""

    prompts: list[str]
    anchors: list[str]
    seeds: list[int]
    num_scales: int
    concept: str
    A: np.ndarray            # (P, S, K+1) detector score of A(k)
    B: np.ndarray            # (P, S, K+1) detector score of B(k)
    images_A: Tensor | None  # (P, S, K+1, 3, H, W) in [0, 1]
    images_B: Tensor | None
    js: np.ndarray           # (P, S, K) mean per-bit JS divergence (nats) at scale k
    js_total: np.ndarray     # (P, S, K) summed JS over tokens and bits at scale k
    flip: np.ndarray         # (P, S, K) fraction of bits whose argmax differs
    maps: list[np.ndarray]   # K arrays (h_k, w_k): per-token mean JS averaged over pairs and seeds
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    passes: int = 0

    # -- aggregates -------------------------------------------------------------------------------------------
    def curve(self, which: str = "A", n_boot: int = 1000, seed: int = 0) -> dict:
        """Mean and 95% bootstrap CI over pairs x seeds of A(k) or B(k), k = 0..K."""
        x = (self.A if which == "A" else self.B).reshape(-1, self.num_scales + 1)
        stats = [bootstrap_ci(x[:, k].tolist(), n=n_boot, seed=seed) for k in range(x.shape[1])]
        return {"mean": [s[0] for s in stats], "lo": [s[1] for s in stats], "hi": [s[2] for s in stats]}

    def saliency(self, n_boot: int = 1000, seed: int = 0) -> dict:
        """Incremental saliency S_k (k = 0..K-1) of the mean curve, with a bootstrap CI over (pair, seed)
        samples, plus the raw increments ``A(k+1) - A(k)``."""
        x = self.A.reshape(-1, self.num_scales + 1)
        rng = np.random.default_rng(seed)

        def s_of(rows: np.ndarray) -> np.ndarray:
            m = rows.mean(0)
            den = m[-1] - m[0]
            inc = np.diff(m)
            return inc / den if abs(den) > 1e-8 else np.full_like(inc, np.nan)

        s = s_of(x)
        boots = np.stack([s_of(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)])
        import warnings
        with warnings.catch_warnings():   # identical prompts: S_k is undefined (NaN) everywhere, by design
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(boots, 2.5, axis=0), np.nanpercentile(boots, 97.5, axis=0)
        return {"S": s.tolist(), "lo": lo.tolist(), "hi": hi.tolist(), "raw_increment": np.diff(x.mean(0)).tolist(),
                "denominator": float(x.mean(0)[-1] - x.mean(0)[0])}

    def divergence(self) -> dict:
        """Per-scale mean JS, share of the total JS, and flip rate (means over pairs x seeds)."""
        tot = self.js_total.reshape(-1, self.num_scales)
        share = tot.sum(0) / max(tot.sum(), 1e-12)
        return {"mean_js": self.js.reshape(-1, self.num_scales).mean(0).tolist(), "share": share.tolist(),
                "flip_rate": self.flip.reshape(-1, self.num_scales).mean(0).tolist()}

    def summary(self) -> dict:
        a = self.curve("A")
        b = self.curve("B")
        sal = self.saliency()
        div = self.divergence()
        return {
            "concept": self.concept, "num_pairs": len(self.prompts), "num_seeds": len(self.seeds),
            "S0": sal["S"][0], "S0_ci": [sal["lo"][0], sal["hi"][0]],
            "A0": a["mean"][0], "AK": a["mean"][-1], "A1": a["mean"][1], "B1": b["mean"][1],
            "B1_minus_A0": b["mean"][1] - a["mean"][0],
            "divergence_share_scale0": div["share"][0], "seconds": self.seconds, "passes": self.passes,
        }

    def to_json(self) -> dict:
        return {"summary": self.summary(), "settings": self.settings, "prompts": self.prompts,
                "anchors": self.anchors, "seeds": self.seeds, "num_scales": self.num_scales,
                "commitment_A": self.curve("A"), "late_injection_B": self.curve("B"), "saliency": self.saliency(),
                "divergence": self.divergence(), "A_raw": self.A.tolist(), "B_raw": self.B.tolist(),
                "js_raw": self.js.tolist(), "flip_raw": self.flip.tolist(),
                "maps": [m.tolist() for m in self.maps]}


def bootstrap_ci(
    values: Any, n: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron & Tibshirani 1993, ch. 13).

    Resamples ``values`` with replacement ``n`` times (``numpy.random.default_rng(seed)``), and returns the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled means.

    Args:
        values: 1-D array-like of floats (per-image scores, 0/1 flags, ...); NaNs are not allowed.
        n: number of bootstrap resamples (>= 1). alpha: 1 - confidence level, in ``(0, 1)``.

    Returns:
        ``(mean, lo, hi)``: the sample mean and the interval bounds (all floats).

    Raises:
        SaceError: empty or non-finite values, bad ``n`` or ``alpha``.
    """
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64).ravel()
    if v.size == 0:
        raise SaceError("bootstrap_ci needs at least one value")
    if not np.isfinite(v).all():
        raise SaceError("bootstrap_ci got NaN or inf values; drop them first")
    if int(n) < 1 or not 0.0 < float(alpha) < 1.0:
        raise SaceError(f"bootstrap_ci needs n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(int(n))
    chunk = max(1, 2_000_000 // v.size)
    for s in range(0, int(n), chunk):
        k = min(chunk, int(n) - s)
        means[s:s + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def _switch_runs(num_scales: int) -> tuple[list[tuple[str, int]], dict]:
    """The 2K distinct runs of one (pair, seed) as ('A'|'B', k) plus the fork plan.

    Rows start as two trunks: row 0 = c* everywhere (A(K) = B(0)), row 1 = c everywhere (A(0) = B(K)).
    Before scale s (1..K-1) the c* trunk forks A(s) (switches to c) and the c trunk forks B(s).
    """
    k_all = num_scales
    runs = [("A", k_all), ("A", 0)]
    forks = {}
    for s in range(1, k_all):
        runs = runs + [("A", s), ("B", s)]
        forks[s] = list(runs)
    return runs, forks


def _row_uses_concept(run: tuple[str, int], scale: int) -> bool:
    kind, k = run
    return scale < k if kind == "A" else scale >= k


@torch.no_grad()
def issa(
    model,
    prompts: Sequence[str],
    anchors: Sequence[str],
    seeds: Sequence[int],
    score_fn: Callable[[Tensor], Tensor],
    *,
    concept: str = "concept",
    settings: SamplingSettings | None = None,
    logit_view: bool = True,
    keep_images: bool = True,
    max_rows: int = 1024,
    progress: bool = False,
) -> ISSAResult:
    """Run ISSA-swap (and ISSA-logit) for prompt pairs over seeds.

    Args:
        model: a scale-wise model with a text encoder (adapters, if attached, are part of the model).
        prompts, anchors: paired concept prompts c* and anchor prompts c (same length P >= 1).
        seeds: S seeds; every (pair, seed) uses one RNG stream for all its switch points.
        score_fn: images ``(N, 3, H, W)`` in [0, 1] -> ``(N,)`` concept score (e.g. the classifier's
            probability of the concept's class, or a NudeNet score).
        settings: sampling settings (default: the model's).
        logit_view: also compute ISSA-logit on the c* pyramid.
        max_rows: rows per sampling pass (each (pair, seed) needs 2K rows); all of them in one pass when
            they fit.
    Returns:
        :class:`ISSAResult`.
    Raises:
        SaceError: empty or unpaired prompts, no seeds.
    """
    prompts = check_prompts(prompts)
    anchors = check_prompts(anchors)
    if len(prompts) != len(anchors):
        raise SaceError(f"{len(prompts)} concept prompts but {len(anchors)} anchor prompts; they must pair up")
    seeds = check_seeds(seeds)
    if not seeds:
        raise SaceError("ISSA needs at least one seed")
    t0 = time.perf_counter()
    sch = model.schedule
    k_all = sch.num_scales
    s_cfg = (settings or SamplingSettings()).resolved(model)
    runs, forks = _switch_runs(k_all)
    n_p, n_s = len(prompts), len(seeds)
    # encode every prompt once: rows [c*_0..c*_{P-1}, c_0..c_{P-1}]
    enc = model.encode_prompts(list(prompts) + list(anchors))
    A = np.zeros((n_p, n_s, k_all + 1))
    B = np.zeros((n_p, n_s, k_all + 1))
    imgs_a = imgs_b = None
    passes = 0
    # rows of a pass: blocks (pair, seed) x runs, forked from 2 trunks per block; blocks are chunked so that
    # at most ``max_rows`` rows run together (one pass for everything when it fits)
    blocks = [(p, j) for p in range(n_p) for j in range(n_s)]
    per_pass = max(1, max_rows // (2 * k_all))
    js = np.zeros((n_p, n_s, k_all))
    js_tot = np.zeros_like(js)
    flips = np.zeros_like(js)
    maps = [np.zeros(g) for g in sch.grids]
    chunks = [blocks[i:i + per_pass] for i in range(0, len(blocks), per_pass)]
    it = chunks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chunks, desc="ISSA passes")
    final = runs
    for chunk in it:
        def conds_for(run_list: list[tuple[str, int]], chunk=chunk) -> list[Condition]:
            return [enc.index([p if _row_uses_concept(r, s) else n_p + p for p, _ in chunk for r in run_list])
                    for s in range(k_all)]

        trunk = runs[:2]
        fork, prev = {}, trunk
        for s, rl in forks.items():
            idx = []
            for b in range(len(chunk)):
                base = b * len(prev)
                idx += [base + i for i in range(len(prev))] + [base + 0, base + 1]
            fork[s] = (torch.tensor(idx), conds_for(rl), None)
            prev = rl
        gens = make_generators([seeds[j] for _, j in chunk for _ in trunk])
        res = sample(model, conds_for(trunk), generator=gens, fork=fork, keep_logits=False, **s_cfg)
        passes += 1
        final = prev
        nr = len(final)
        scores = score_fn(res.images).float().cpu().numpy().reshape(len(chunk), nr)
        imgs = res.images.reshape(len(chunk), nr, *res.images.shape[1:])
        if keep_images and imgs_a is None:
            imgs_a = torch.zeros(n_p, n_s, k_all + 1, *res.images.shape[1:])
            imgs_b = torch.zeros_like(imgs_a)
        for bi, (p, j) in enumerate(chunk):
            for r, (kind, k) in enumerate(final):
                (A if kind == "A" else B)[p, j, k] = scores[bi, r]
                if keep_images:
                    (imgs_a if kind == "A" else imgs_b)[p, j, k] = imgs[bi, r]
        if logit_view:
            rows = [bi * nr + final.index(("A", k_all)) for bi in range(len(chunk))]
            js_c, tot_c, flip_c, maps_c = logit_divergence(
                model, res.pyramid.index(rows), enc.index([p for p, _ in chunk]),
                enc.index([n_p + p for p, _ in chunk]), s_cfg)
            for bi, (p, j) in enumerate(chunk):
                js[p, j], js_tot[p, j], flips[p, j] = js_c[bi], tot_c[bi], flip_c[bi]
            for k in range(k_all):
                maps[k] += maps_c[k] * len(chunk) / len(blocks)
    # A(K) = B(0) (c* everywhere), A(0) = B(K) (c everywhere)
    B[:, :, 0] = A[:, :, k_all]
    B[:, :, k_all] = A[:, :, 0]
    if keep_images:
        imgs_b[:, :, 0] = imgs_a[:, :, k_all]
        imgs_b[:, :, k_all] = imgs_a[:, :, 0]
    return ISSAResult(list(prompts), list(anchors), seeds, k_all, concept, A, B, imgs_a, imgs_b, js, js_tot, flips,
                      maps, settings=s_cfg, seconds=time.perf_counter() - t0, passes=passes)


@torch.no_grad()
def logit_divergence(model, pyramid, cond_star: Condition, cond_anchor: Condition, s_cfg: dict):
    """ISSA-logit on one batch of pyramids ``(N rows)``: teacher-force under c* and c (same guidance and
    temperature as sampling) and compare the guided per-bit distributions.

    Returns:
        js ``(N, K)`` mean per-bit JS (nats, in [0, ln 2]); js_total ``(N, K)`` summed over tokens and bits;
        flip ``(N, K)`` fraction of bits whose argmax differs; maps: K arrays ``(h_k, w_k)`` of per-token mean
        JS averaged over the N rows.
    """
    tf = model.tf_inputs(pyramid, mode="sampling")
    both = Condition.cat([cond_star, cond_anchor])
    g = model.forward_teacher_forced(both, torch.cat([tf, tf]), guidance=s_cfg["guidance"],
                                     temperature=s_cfg["temperature"])
    n, kind = cond_star.batch_size, model.token_kind
    js, tot, flip, maps = [], [], [], []
    for k, z in enumerate(g.per_scale):
        d = kind.js(z[:n], z[n:])                         # (N, n_k, F)
        js.append(d.mean((1, 2)))
        tot.append(d.sum((1, 2)))
        flip.append(kind.flips(kind.argmax(z[:n]), kind.argmax(z[n:])).mean((1, 2)))
        h, w = model.schedule.grids[k]
        maps.append(d.mean(-1).mean(0).reshape(h, w).cpu().numpy())
    return (torch.stack(js, 1).cpu().numpy(), torch.stack(tot, 1).cpu().numpy(),
            torch.stack(flip, 1).cpu().numpy(), maps)


def write_issa_outputs(res: ISSAResult, out_dir, title: str = "ISSA", extra: dict | None = None,
                       report=None) -> dict:
    """Write ``issa.json``, the plots (curves with 95% bands, saliency, divergence per scale), the per-scale
    heat maps, the image grids (rows = switch scale k, columns = seeds) and ``report.html`` into ``out_dir``.

    ``report``: an existing :class:`~sace.reporting.Report` to append the ISSA section to (then no separate
    report.html is written). Returns a dict of the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k_all = res.num_scales
    ks = list(range(k_all + 1))
    a, b = res.curve("A"), res.curve("B")
    sal = res.saliency()
    div = res.divergence()
    paths = {}
    paths["curves"] = plot_curves(ks, {"A(k): concept at scales < k": a, "B(k): concept at scales >= k": b},
                                  out / "issa_curves.png", xlabel="switch scale k", ylabel=f"P({res.concept})",
                                  title=f"ISSA-swap: {res.concept}", xticks=ks, ylim=(0, 1.02))
    paths["saliency"] = plot_curves(list(range(k_all)), {"S_k": {"mean": sal["S"], "lo": sal["lo"], "hi": sal["hi"]}},
                                    out / "issa_saliency.png", xlabel="scale k", ylabel="incremental saliency S_k",
                                    title="Incremental semantic saliency (95% bootstrap band)",
                                    xticks=list(range(k_all)))
    paths["divergence"] = plot_bars([str(k) for k in range(k_all)],
                                    {"share of total JS": div["share"], "mean JS / ln2": [
                                        x / 0.6931 for x in div["mean_js"]], "flip rate": div["flip_rate"]},
                                    out / "issa_divergence.png", xlabel="scale k", ylabel="value",
                                    title="ISSA-logit: c* vs c on the c* pyramid")
    grids = [f"{h}x{w}" for h, w in [tuple(g.shape) for g in res.maps]]
    paths["heatmaps"] = plot_heatmaps(res.maps, [f"scale {k} ({g})" for k, g in enumerate(grids)],
                                      out / "issa_heatmaps.png", suptitle="per-token JS divergence (nats)")
    if res.images_A is not None:
        n_cols = min(8, len(res.seeds))
        for name, imgs, lab in (("A", res.images_A, "A"), ("B", res.images_B, "B")):
            grid = imgs[0, :n_cols].permute(1, 0, 2, 3, 4).reshape(-1, *imgs.shape[-3:])
            paths[f"grid_{name}"] = save_grid(grid, n_cols, out / f"issa_grid_{name}.png",
                                              row_labels=[f"{lab}({k})" for k in ks],
                                              col_labels=[f"seed {s}" for s in res.seeds[:n_cols]],
                                              title=f"{res.prompts[0]!r} vs {res.anchors[0]!r}")
    data = res.to_json()
    data["version"] = __version__
    data.update(extra or {})
    write_json(out / "issa.json", data)
    paths["json"] = out / "issa.json"
    own = report is None
    rep = report or Report(title, subtitle=f"{res.concept}: {len(res.prompts)} pair(s) x {len(res.seeds)} seeds")
    sm = res.summary()
    rep.heading(f"ISSA: where does '{res.concept}' enter?", 2)
    rep.text("A(k): concept prompt at scales < k, anchor prompt from scale k on (A(0) = anchor image, "
             f"A(K) = concept image). B(k): the reverse. The axiom 'locked at scale 0' predicts S_0 ~ 1 and "
             f"B(1) ~ A(0). Measured: S_0 = {sm['S0']:.3f} (95% CI {sm['S0_ci'][0]:.3f}..{sm['S0_ci'][1]:.3f}), "
             f"A(0) = {sm['A0']:.3f}, A(1) = {sm['A1']:.3f}, A(K) = {sm['AK']:.3f}, B(1) = {sm['B1']:.3f}; "
             f"scale 0 carries {100 * sm['divergence_share_scale0']:.1f}% of the c*-vs-c divergence.")
    rep.kv({k: v for k, v in sm.items() if not isinstance(v, list)}, caption="summary")
    rep.image(paths["curves"], caption="commitment A(k) and late-injection B(k), mean and 95% bootstrap band")
    rep.image(paths["saliency"], caption="incremental saliency S_k = (A(k+1)-A(k)) / (A(K)-A(0))")
    rep.image(paths["divergence"], caption="per-scale divergence share, mean JS and flip rate")
    rep.image(paths["heatmaps"], caption="per-token JS maps per scale")
    for name in ("grid_A", "grid_B"):
        if name in paths:
            rep.image(paths[name], caption=f"{name[-1]}(k) rows, seeds as columns")
    rep.table([{"k": k, "A(k)": a["mean"][k], "A lo": a["lo"][k], "A hi": a["hi"][k], "B(k)": b["mean"][k],
                "S_k": sal["S"][k] if k < k_all else None,
                "JS share": div["share"][k] if k < k_all else None} for k in ks], caption="per-scale numbers")
    rep.details("settings", res.settings)
    if own:
        paths["report"] = rep.write(out / "report.html")
    return paths
