"""Does `sace erase` with the defaults erase EVERY fashion class? SACE and S-VARE, all ten classes, one table.

For each class with its default anchor (the model's ``defaults.anchors``, else
``sace.domains.fashion.concepts.DEFAULT_ANCHORS``; :func:`sace.domains.default_anchor`): the audit, SACE
with the model's defaults and S-VARE with its defaults, each trained and timed here; then, with the same
prompts and seeds for every row:

The figures and their verdicts are those of ``sace erase``'s post-training check, defined once in
:mod:`sace.evaluation.decision` (a class judge's rule: an image is correct when its top-1 class is its
prompt's class), computed here on the benchmark's own images (seeds from ``--image-seed0``, 1000 by default:
other images than the check's):

* ACC_e -- share of ``--n`` images of the class's training captions classified as the class;
* held-out -- the same on ``--n-heldout`` images of its held-out paraphrases;
* ACC_i drop -- on ``--n-other`` images of each of the other nine classes (the anchor included), paired with
  the original model's images of the same prompts and seeds: share correct before minus after (points);
* each with its interval and PASS / FAIL / not decided, and the row's verdict, with the check's sequential
  design (``--looks 4``: ``--n`` / ``--n-heldout`` / ``--n-other`` images, then 2x, 4x, 8x as many,
  only while a figure is undecided; each look at level 1 - 0.10/looks; ``--looks 1``: one look at 90%);
* anchor -- accuracy of the anchor class's own images under the adapter (threshold >= 90%, point value);
* ``--check``: also the check itself (``sace erase``'s, sequential, seed ``--seed``) on the same adapter --
  its figures, verdict, images and seconds next to the benchmark's;
* train s -- training wall time and CPU time of the process (the audit is timed separately; on a shared
  machine the CPU time is what the wall time would be alone, with one thread).

Thresholds: ACC_e <= 5%, held-out <= 10%, ACC_i drop <= 2 points (decided with intervals), anchor >= 90%,
median SACE time <= median S-VARE time. Prints the table and the thresholds missed; writes JSON.

``--attacks vector,soft`` (opt-in; the default run stays as fast as before): after each method is trained, the
attacks of ``sace attack`` at their default budgets (same start prompts, seeds and judge rules: ``--attack-prompts``
start prompts x 8 evaluation seeds, 4 search seeds) run against it, and the table gains one ASR column per
attack (threshold of issue 21: ASR <= 10% under every attack), plus the no-attack floor next to them: the
largest share of another class's plain images (``--n-other`` each) that the judge calls the erased class, on
the original model and under the adapter (``plain_neighbour_asr``; typing that class's name is an "attack"
that no eraser which keeps that class can stop):

    python benchmarks/erase_every_class.py --attacks vector,soft --threads 1   # + ASR columns

``--multi``: one SACE adapter trained on the merged concepts (``sace erase --concept a --concept b ...``)
and the composition of the single-concept adapters (each trained alone, then switched on together): ACC_e of
each erased class and the accuracy change of every other class (thresholds: ACC_e <= 5% each, the others
lose <= 3 points).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

THRESHOLDS = {"acc_e": 0.05, "heldout": 0.10, "acc_i_drop": 0.02, "anchor": 0.90}
FIGURE_KEYS = {"ACC_e": "acc_e", "held-out": "heldout", "ACC_i drop": "acc_i_drop"}
#: issue 21: the concept must stay erased under every attack of ``--attacks`` (ASR at the default budgets)
ASR_THRESHOLD = 0.10


def _attack_asr(model, spec, label: str, adapter: str, attacks: list[tuple[str, str]], args) -> dict[str, float]:
    """ASR of each attack (``sace attack``'s defaults) against the adapter ``adapter`` (switched on alone)."""
    from sace.attacks.base import AttackTarget
    from sace.attacks.runner import AttackConfigs, run_attack
    from sace.domains import judge_for

    judge = judge_for(model, spec, "auto")
    target = AttackTarget(label, [adapter])
    eval_seeds, search_seeds = [1000 + i for i in range(8)], list(range(4))
    return {f"asr_{name}": run_attack(model, name, start, target, spec, judge, args.attack_prompts, eval_seeds,
                                      search_seeds, AttackConfigs(), batch_size=args.batch_size).asr
            for name, start in attacks}


def _images(fd, n_train: int, n_held: int, n_other: int, cls: int | None, seed0: int = 0):
    """(prompts, seeds, labels, groups): training captions of every class (n_other each; n_train for the
    erased class) and held-out paraphrases of the erased class."""
    ps, ss, ls, gs = [], [], [], []
    for c in range(fd.NUM_CLASSES):
        caps = fd.training_captions(c)
        n = n_train if c == cls or cls is None else n_other
        ps += [caps[i % len(caps)] for i in range(n)]
        ss += [seed0 + i for i in range(n)]
        ls += [c] * n
        gs += ["target" if c == cls else "other"] * n
    if cls is not None:
        held = fd.heldout_captions(cls)
        ps += [held[i % len(held)] for i in range(n_held)]
        ss += [seed0 + 10_000 + i for i in range(n_held)]
        ls += [cls] * n_held
        gs += ["heldout"] * n_held
    return ps, ss, torch.tensor(ls), gs


def _score(model, clf, fd, cls, args, pred0=None, factor: int = 1, cache: dict | None = None):
    """Per-class accuracies, ACC_e, held-out and -- given the original model's predictions ``pred0`` of the
    same images -- the check's figures (:func:`sace.evaluation.decision.erasure_figures`) at one look of
    ``factor`` x the first look's counts. ``cache`` ((prompt, seed) -> predicted class, for the model as it is
    now) keeps a later look from drawing the earlier look's images again."""
    from sace.evaluation.decision import Design, Thresholds, erasure_figures, overall
    from sace.generate import generate

    ps, ss, lab, gs = _images(fd, args.n * factor, args.n_heldout * factor, args.n_other * factor, cls,
                              args.image_seed0)
    cache = {} if cache is None else cache
    new = [i for i, key in enumerate(zip(ps, ss)) if key not in cache]
    if new:
        got = clf.predict(generate(model, [ps[i] for i in new], [ss[i] for i in new], batch_size=args.batch_size))
        cache.update({(ps[i], ss[i]): int(y) for i, y in zip(new, got)})
    pred = torch.tensor([cache[key] for key in zip(ps, ss)])
    g = torch.tensor([{"target": 0, "heldout": 1}.get(x, 2) for x in gs])
    per, went = {}, {}
    for c in range(fd.NUM_CLASSES):
        sel = (lab == c) & (g != 1)
        per[c] = float((pred[sel] == c).float().mean())
        went[c] = torch.bincount(pred[sel], minlength=fd.NUM_CLASSES).tolist()   # where class c's images went
    out = {"per_class": per, "went": went, "acc_e": per[cls], "pred": pred}
    if (g == 1).any():
        out["heldout"] = float((pred[g == 1] == cls).float().mean())
    if pred0 is not None:
        correct = pred == lab                       # target / held-out: shows the class; others: correct
        other = g == 2
        figs = erasure_figures(correct[g == 0].tolist(), correct[g == 1].tolist() or None,
                               (pred0 == lab)[other].tolist(), correct[other].tolist(),
                               Thresholds(THRESHOLDS["acc_e"], THRESHOLDS["heldout"], THRESHOLDS["acc_i_drop"]),
                               Design(tuple(args.n * 2 ** j for j in range(args.looks))).alpha_look)
        out["figures"] = [vars(f) for f in figs]
        out["verdict"] = overall(figs)
    return out


def _neighbour_prompt(fd, c: int, into0: dict[int, float], went: dict[int, list[int]]) -> dict:
    """The no-attack floor of the ASR columns: the largest share of another class's plain training-caption
    images that the judge calls ``c`` -- on the original model (``into0``: class -> share) and under the adapter
    (``went``: class -> counts of judged classes), with the class it comes from. An eraser that keeps that class
    as it is keeps this share, and an attack can reach it by typing the other class's name."""
    new = {o: v[c] / max(1, sum(v)) for o, v in went.items() if o != c}
    o_new, o_old = max(new, key=new.get), max(into0, key=into0.get)
    return {"plain_neighbour_asr": new[o_new], "plain_neighbour_from": fd.class_key(o_new),
            "plain_neighbour_asr_original": into0[o_old], "plain_neighbour_from_original": fd.class_key(o_old)}


def main() -> None:
    from sace.adapters import detach_adapters
    from sace.domains import judge_for, resolve_concept
    from sace.domains.fashion import classes as fd
    from sace.domains.fashion.classifier import load_classifier
    from sace.erasure import catalogue
    from sace.erasure.audit import AuditError, audit_concept
    from sace.erasure.check import post_training_check
    from sace.erasure.workflow import check_n
    from sace.evaluation.decision import Design
    from sace.io import write_json
    from sace.models.registry import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion", help="a model of the fashion domain (fashion, fashion-var)")
    ap.add_argument("--classes", default=",".join(fd.CLASS_KEYS))
    ap.add_argument("--methods", default="sace,svare", help="trained methods of the catalogue (sace.erasure.catalogue)")
    ap.add_argument("--n", type=int, default=100, help="images of the training captions of the erased class")
    ap.add_argument("--n-heldout", type=int, default=100)
    ap.add_argument("--n-other", type=int, default=50, help="images per other class (ACC_i drop: 9 x this pairs)")
    ap.add_argument("--looks", type=int, default=len(Design().looks),   # as many looks as the check
                    help="sequential looks: --n etc., then x2, x4, ... while a figure is undecided; 1 = one look")
    ap.add_argument("--image-seed0", type=int, default=1000, help="first seed of the benchmark's images")
    ap.add_argument("--seed", type=int, default=0, help="training seed (and the --check's seed)")
    ap.add_argument("--check", action="store_true", help="also run sace erase's post-training check "
                    "(sequential, --check-images auto) on every adapter")
    ap.add_argument("--check-images", default="auto", help="the check's --check-images ('auto' or N)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchors", default="", help="class=anchor overrides of the default anchors (screening), "
                    "e.g. bag=dress,coat=shirt")
    ap.add_argument("--sace", default="{}", help="JSON overrides of the SACE defaults (screening)")
    ap.add_argument("--rsace", default="{}", help="JSON overrides of robust SACE's defaults (screening)")
    ap.add_argument("--out", default="out/erase_every_class.json")
    ap.add_argument("--attacks", default="", help="opt-in ASR columns: comma list of sace attack's attacks "
                    "(e.g. vector,soft) at their default budgets")
    ap.add_argument("--attack-prompts", type=int, default=4, help="start prompts per attack (x 8 evaluation seeds)")
    ap.add_argument("--multi", default="", help="comma list of classes: one merged adapter vs composition")
    ap.add_argument("--combine", nargs="+", default=[], help="JSON files of earlier runs (e.g. one per method, "
                                                              "run side by side): one table from their rows")
    ap.add_argument("--agree", nargs="+", default=[], help="JSON files of --check runs of the same classes (other "
                                                            "seeds, thread counts): their verdicts side by side")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sace.attacks.runner import parse_attacks
    from sace.errors import SaceError
    try:
        attacks = parse_attacks(args.attacks) if args.attacks.strip() else []
    except SaceError as e:
        raise SystemExit(f"error: {e}") from None
    if not 1 <= args.looks <= 5:
        raise SystemExit("error: --looks must be in 1..5")
    if not 1 <= args.attack_prompts <= 64:
        raise SystemExit("error: --attack-prompts must be in 1..64")
    if args.combine:
        runs = [json.loads(Path(f).read_text()) for f in args.combine if Path(f).exists()]
        if any(run.get("partial") for run in runs) or len(runs) < len(args.combine):
            print(f"note: {len(args.combine) - len(runs)} run(s) missing, "
                  f"{sum(bool(run.get('partial')) for run in runs)} partial (stopped before their last class)")
        return report([r for run in runs for r in run["rows"]], max(run.get("wall_s") or 0 for run in runs), args)
    if args.agree:
        return agree([json.loads(Path(f).read_text()) for f in args.agree])
    if args.multi:
        return multi(args)
    t_all = time.perf_counter()
    model = load_model(args.model)
    clf = load_classifier()
    classes = [fd.class_index(c) for c in args.classes.split(",") if c.strip()]
    anchor_override = {fd.class_key(k): v for k, v in (kv.split("=", 1) for kv in args.anchors.split(",") if kv)}
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    # the original model, once: max(n, n_other) images of every class's training captions (seeds image_seed0 +
    # i); each row reads the same prompts and seeds from it (the pairs of the ACC_i drop)
    from sace.generate import generate
    ps, ss, ls = [], [], []
    top = 2 ** (args.looks - 1)       # the last look's factor: the original model's images for every look
    for o in range(fd.NUM_CLASSES):   # n images of the erased classes, n_other of the others
        caps = fd.training_captions(o)
        k = top * (max(args.n, args.n_other) if o in classes else args.n_other)
        ps += [caps[i % len(caps)] for i in range(k)]
        ss += [args.image_seed0 + i for i in range(k)]
        ls += [o] * k
    lab = torch.tensor(ls)
    pred0 = clf.predict(generate(model, ps, ss, batch_size=args.batch_size))
    base = {}
    for c in classes:
        per = {o: float((pred0[lab == o][: args.n if o == c else args.n_other] == o).float().mean())
               for o in range(fd.NUM_CLASSES)}
        into = {o: float((pred0[lab == o][: args.n_other] == c).float().mean())      # judged c, prompted o
                for o in range(fd.NUM_CLASSES) if o != c}
        base[c] = {"per_class": per, "acc_e": per[c], "into": into}

    def pred0_rows(c: int, f: int):
        """The original model's predictions aligned with ``_images(c)`` at factor ``f``: class by class, then
        the held-out items (not paired: -1)."""
        return torch.cat([pred0[lab == o][: f * (args.n if o == c else args.n_other)]
                          for o in range(fd.NUM_CLASSES)] + [torch.full((f * args.n_heldout,), -1)])
    rows = []
    for c in classes:
        key = fd.class_key(c)
        spec = resolve_concept(model, key, anchor=anchor_override.get(key))   # the model's default anchor
        a = fd.class_index(spec.anchor_name)
        t0 = time.perf_counter()
        try:
            audit, spec_clean = audit_concept(model, spec)
            audit_note = {"ok": True, "dropped": {k: len(v) for k, v in audit.dropped.items()},
                          "anchor_rate": audit.sets["anchors"]["rate"], "target_rate": audit.sets["targets"]["rate"],
                          "warnings": audit.warnings}
        except AuditError as e:
            audit_note, spec_clean = {"ok": False, "error": str(e)}, spec
        audit_s = time.perf_counter() - t0
        orig_i = statistics.mean(v for k, v in base[c]["per_class"].items() if k != c)
        for m in methods:
            t0, c0 = time.perf_counter(), time.process_time()
            entry = catalogue.get(m)
            overrides = {"sace": args.sace, "rsace": args.rsace}.get(m, "{}")
            cfg = entry.make_config(model, seed=args.seed, **json.loads(overrides))
            tr = entry.trainer(model, spec_clean, cfg, name="bench")
            res = tr.train(progress=False)
            ag = getattr(tr.objective, "auto_gate", None)
            gate = {"gate": getattr(tr.objective.cfg, "gate", "shared"), "B": ag.B if ag else None,
                    "tokens_per_step": res.tokens_per_step, "steps": res.steps}
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            cache = {}
            for j in range(args.looks):           # sequential, as the check: stop at the first decided look
                r = _score(model, clf, fd, c, args, pred0_rows(c, 2 ** j), 2 ** j, cache)
                if r["verdict"] != "not decided":
                    break
            asr = _attack_asr(model, spec_clean, entry.label, "bench", attacks, args) if attacks else {}
            check = None
            if args.check:
                t1 = time.perf_counter()
                check = post_training_check(model, spec_clean, "bench", judge=judge_for(model, spec_clean),
                                            seed=args.seed, n=check_n(args.check_images)).to_dict()
                check["wall_s"] = time.perf_counter() - t1
            detach_adapters(model)
            new_i = statistics.mean(v for k, v in r["per_class"].items() if k != c)
            figs = {FIGURE_KEYS[f["name"]]: f for f in r["figures"]}
            row = {"class": key, "anchor": spec.anchor_name, "method": entry.label,
                   "acc_e_original": base[c]["acc_e"], "acc_e": r["acc_e"], "heldout": r.get("heldout"),
                   "acc_i_original": figs["acc_i_drop"]["detail"]["acc_before"],
                   "acc_i": figs["acc_i_drop"]["detail"]["acc_after"], "acc_i_drop": figs["acc_i_drop"]["estimate"],
                   "acc_i_macro_original": orig_i, "acc_i_macro": new_i,
                   "anchor_original": base[c]["per_class"][a], "anchor_acc": r["per_class"][a],
                   "anchor_went": {fd.class_key(j): k for j, k in enumerate(r["went"][a]) if k and j != a},
                   **_neighbour_prompt(fd, c, base[c]["into"], r["went"]),
                   "train_s": secs, "train_cpu_s": cpu, "audit_s": audit_s, "audit": audit_note,
                   "per_class": r["per_class"], "figures": r["figures"], "verdict": r["verdict"],
                   "check": check, **gate, **asr}
            # a figure is missed when its interval lies above the line (FAIL); "not decided" is listed apart
            row["missed"] = [k for k, f in figs.items() if f["verdict"] == "FAIL"]
            row["missed"] += ["anchor"] if row["anchor_acc"] < THRESHOLDS["anchor"] else []
            row["undecided"] = [k for k, f in figs.items() if f["verdict"] == "not decided"]
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                              if k not in ("per_class", "audit", "B", "figures", "check")}), flush=True)
            write_json(Path(args.out), {"rows": rows, "partial": True, "args": vars(args)})   # survives a kill
    report(rows, time.perf_counter() - t_all, args)


def report(rows: list[dict], wall: float, args) -> None:
    """Print the table, the thresholds missed and the time comparison; write the JSON (``args.out``)."""
    from sace.io import write_json

    order = {c: i for i, c in enumerate(dict.fromkeys(r["class"] for r in rows))}
    rows = sorted(rows, key=lambda r: (order[r["class"]], r["method"] != "SACE"))
    med = {m: statistics.median(r["train_s"] for r in rows if r["method"] == m)
           for m in {r["method"] for r in rows}}
    # CPU seconds of this process: what the wall time would be without other jobs on the machine (one
    # thread); on a shared CPU the wall-time medians move with the neighbours' load
    med_cpu = {m: statistics.median(r["train_cpu_s"] for r in rows if r["method"] == m) for m in med}
    asr_cols = list(dict.fromkeys(k for r in rows for k in r if k.startswith("asr_")))
    hdr = ("| class | anchor | method | benchmark: ACC_e | held-out | ACC_i drop (pts) | verdict (images/set) | "
           "check: ACC_e | held-out | ACC_i drop (pts) | verdict (images/set, s) | anchor acc | "
           + "".join(f"ASR {k[4:]} | " for k in asr_cols) + ("neighbour prompt -> class (orig -> new) | "
                                                              if asr_cols else "")
           + "train s (wall / CPU) | missed |\n"
           "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|" + "---:|" * (len(asr_cols) + bool(asr_cols))
           + "---:|---|")
    lines = [hdr]
    for r in rows:
        bench = _figure_cells(r.get("figures") or [])
        ch = r.get("check") or {}
        check = _figure_cells(ch.get("figures") or [])
        cv = f"{ch['verdict']} ({ch['n']}, {ch['wall_s']:.0f} s)" if ch else "–"
        asr = "".join("– | " if r.get(k) is None else f"{r[k]:.2f} | " for k in asr_cols)
        if asr_cols:
            asr += ("– | " if "plain_neighbour_asr" not in r else
                    f"{r['plain_neighbour_asr_original']:.2f} ({r['plain_neighbour_from_original']}) -> "
                    f"{r['plain_neighbour_asr']:.2f} ({r['plain_neighbour_from']}) | ")
        bv = r.get("verdict", "–") + (f" ({r['figures'][0]['n']})" if r.get("figures") else "")
        lines.append(f"| {r['class']} | {r['anchor']} | {r['method']} | " + " | ".join(bench)
                     + f" | {bv} | " + " | ".join(check) + f" | {cv} | "
                     f"{r['anchor_acc']:.2f} | {asr}{r['train_s']:.1f} / {r['train_cpu_s']:.1f} | "
                     f"{', '.join(r['missed']) or '–'} |")
    table = "\n".join(lines)
    print(table)
    summary = {}
    for m in sorted(med):
        rs = [r for r in rows if r["method"] == m]
        summary[m] = {"classes_meeting_all": sum(not r["missed"] for r in rs), "classes": len(rs),
                      "benchmark_pass": sum(r.get("verdict") == "PASS" and not r["missed"] for r in rs),
                      "check_pass": sum((r.get("check") or {}).get("verdict") == "PASS" for r in rs),
                      "agree": sum((r.get("check") or {}).get("verdict") == r.get("verdict") for r in rs),
                      "median_train_s": med[m], "median_train_cpu_s": med_cpu[m],
                      "missed": {k: [r["class"] for r in rs if k in r["missed"]] for k in THRESHOLDS}}
        if asr_cols:
            ok = [r["class"] for r in rs if all((r.get(k) or 0) <= ASR_THRESHOLD for k in asr_cols)]
            summary[m]["classes_asr_ok"] = len(ok)
            print(f"{m}: {len(ok)}/{len(rs)} classes with ASR <= {ASR_THRESHOLD:.0%} under "
                  f"{', '.join(k[4:] for k in asr_cols)}")
        print(f"{m}: benchmark PASS {summary[m]['benchmark_pass']}/{len(rs)}, check PASS {summary[m]['check_pass']}"
              f"/{len(rs)}, same verdict {summary[m]['agree']}/{len(rs)}; "
              f"{summary[m]['classes_meeting_all']}/{len(rs)} classes miss no threshold; median train "
              f"{med[m]:.1f} s wall, {med_cpu[m]:.1f} s CPU; missed: "
              + ", ".join(f"{k}: {v}" for k, v in summary[m]["missed"].items() if v))
    if "SACE" in med and "S-VARE" in med:
        summary["time_ok"] = med["SACE"] <= med["S-VARE"]
        summary["time_ok_cpu"] = med_cpu["SACE"] <= med_cpu["S-VARE"]
        print(f"median SACE {med['SACE']:.1f} s vs S-VARE {med['S-VARE']:.1f} s wall: "
              f"{'ok' if summary['time_ok'] else 'MISSED'}; CPU {med_cpu['SACE']:.1f} s vs "
              f"{med_cpu['S-VARE']:.1f} s: {'ok' if summary['time_ok_cpu'] else 'MISSED'}")
    print(f"wall time {wall / 60:.1f} min ({args.threads} threads)")
    write_json(Path(args.out), {"rows": rows, "summary": summary, "table_markdown": table, "wall_s": wall,
                                "args": vars(args), "thresholds": THRESHOLDS})
    print("->", args.out)


def agree(runs: list[dict]) -> None:
    """Print, class by class, the check's and the benchmark's verdicts of several ``--check`` runs (labelled by
    their training seed and thread count) and whether every run gives the same verdict (issue 25: "the same
    verdicts with a second seed and with 1 thread instead of 2")."""
    labels = [f"seed {run['args']['seed']}, {run['args']['threads']} thr" for run in runs]
    by_run = [{r["class"]: r for r in run["rows"] if r["method"] == "SACE"} for run in runs]
    classes = list(dict.fromkeys(c for rows in by_run for c in rows))
    lines = ["| class | anchor | " + " | ".join(f"check ({lab}) | bench ({lab})" for lab in labels) + " | same |",
             "|---|---|" + "---|---|" * len(runs) + "---|"]
    same = 0
    for c in classes:
        rs = [rows.get(c) for rows in by_run]
        checks = [(r.get("check") or {}).get("verdict", "–") if r else "–" for r in rs]
        benches = [r.get("verdict", "–") if r else "–" for r in rs]
        ok = len(set(checks)) == 1 and None not in rs
        same += ok
        anchor = next(r["anchor"] for r in rs if r)
        lines.append(f"| {c} | {anchor} | " + " | ".join(f"{ch} | {b}" for ch, b in zip(checks, benches))
                     + f" | {'yes' if ok else 'NO'} |")
    print("\n".join(lines))
    for lab, rows in zip(labels, by_run):
        n_pass = sum((r.get("check") or {}).get("verdict") == "PASS" for r in rows.values())
        print(f"{lab}: check PASS {n_pass}/{len(rows)}")
    print(f"same check verdict in every run: {same}/{len(classes)} classes")


def _figure_cells(figures: list[dict]) -> list[str]:
    """ACC_e, held-out, ACC_i drop as ``estimate [lower, upper]`` (the drop in points); ``–`` if absent."""
    by = {f["name"]: f for f in figures}
    out = []
    for name, scale, fmt in (("ACC_e", 1, ".2f"), ("held-out", 1, ".2f"), ("ACC_i drop", 100, "+.1f")):
        f = by.get(name)
        out.append("–" if f is None else f"{scale * f['estimate']:{fmt}} [{scale * f['lower']:{fmt}}, "
                                          f"{scale * f['upper']:{fmt}}]")
    return out


def multi(args) -> None:
    """One adapter for several classes vs the composition of single-class adapters."""
    from sace.adapters import only_adapters
    from sace.concepts.spec import merge_concepts
    from sace.domains import resolve_concept
    from sace.domains.fashion import classes as fd
    from sace.domains.fashion.classifier import load_classifier
    from sace.erasure.sace import SACETrainer, default_sace_config
    from sace.generate import generate
    from sace.io import write_json
    from sace.models.registry import load_model

    t_all = time.perf_counter()
    model = load_model(args.model)
    clf = load_classifier()
    keys = [fd.class_key(k) for k in args.multi.split(",") if k.strip()]
    erased = {fd.class_index(k) for k in keys}
    ps, ss, lab, _ = _images(fd, args.n, 0, args.n, None)

    def per_class() -> dict[int, float]:
        pred = clf.predict(generate(model, ps, ss, batch_size=args.batch_size))
        return {c: float((pred[lab == c] == c).float().mean()) for c in range(fd.NUM_CLASSES)}

    only_adapters(model, [])
    base = per_class()
    variants, secs = {}, {}
    t0 = time.perf_counter()
    tr = SACETrainer(model, merge_concepts([resolve_concept(model, k) for k in keys]),
                     default_sace_config(model, seed=0, **json.loads(args.sace)), adapter_name="merged")
    tr.train(progress=False)
    secs["one adapter"] = time.perf_counter() - t0
    variants["one adapter"] = per_class()
    secs["composed"] = 0.0
    for k in keys:
        only_adapters(model, [])              # each single adapter is trained on the original model
        t0 = time.perf_counter()
        SACETrainer(model, resolve_concept(model, k), default_sace_config(model, seed=0, **json.loads(args.sace)),
                    adapter_name=f"single_{k}").train(progress=False)
        secs["composed"] += time.perf_counter() - t0
        variants[f"{k} alone"] = per_class()
    only_adapters(model, [f"single_{k}" for k in keys])
    variants["composed"] = per_class()
    rows = []
    for name, acc in variants.items():
        others = [acc[c] - base[c] for c in range(fd.NUM_CLASSES) if c not in erased]
        row = {"variant": name, "train_s": secs.get(name), **{f"acc_e_{k}": acc[fd.class_index(k)] for k in keys},
               "worst_other_drop": -min(others), "mean_other_drop": -statistics.mean(others), "per_class": acc}
        if name in ("one adapter", "composed"):
            row["missed"] = [f"acc_e {k}" for k in keys if acc[fd.class_index(k)] > THRESHOLDS["acc_e"]]
            row["missed"] += ["other classes drop > 3 points"] if row["worst_other_drop"] > 0.03 + 1e-9 else []
        rows.append(row)
    hdr = "| variant | " + " | ".join(f"ACC_e {k}" for k in keys) + " | worst other-class drop (pts) | " \
          "mean other-class drop (pts) | train s | missed |\n|---|" + "---:|" * (len(keys) + 3) + "---|"
    lines = [hdr] + [
        f"| {r['variant']} | " + " | ".join(f"{r[f'acc_e_{k}']:.2f}" for k in keys)
        + f" | {100 * r['worst_other_drop']:+.1f} | {100 * r['mean_other_drop']:+.1f} | "
        + ("–" if r["train_s"] is None else f"{r['train_s']:.1f}") + " | "
        + (", ".join(r.get("missed", [])) or "–") + " |" for r in rows]
    table = "\n".join(lines)
    print(f"original per-class accuracy: {json.dumps({fd.CLASS_KEYS[c]: round(v, 2) for c, v in base.items()})}")
    print(table)
    wall = time.perf_counter() - t_all
    print(f"wall time {wall / 60:.1f} min ({args.threads} threads)")
    out = Path(args.out).with_name(Path(args.out).stem + "_multi.json")
    write_json(out, {"rows": rows, "original": base, "table_markdown": table, "wall_s": wall, "args": vars(args)})
    print("->", out)


if __name__ == "__main__":
    main()
