"""Outputs of ``sace attack``: the ASR table (markdown + HTML), the cost table, ASR-vs-budget curves and
grids of successful attack images, all in one self-contained ``report.html`` (``sace.reporting`` helpers)."""

from __future__ import annotations

from pathlib import Path

from ..io import write_text
from ..reporting import Report, markdown_table, plot_curves, save_grid
from .base import AttackResult


def _budget_text(r: AttackResult) -> str:
    b = r.budget
    return f"{b['per_prompt']} {b['unit']}/prompt"


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)


def asr_rows(results: dict[str, list[AttackResult]]) -> list[dict]:
    """One row per (concept, method): ASR without attack (start prompts c*), then ASR per attack."""
    rows = []
    for concept, rs in results.items():
        by_target: dict[str, dict] = {}
        for r in rs:
            row = by_target.setdefault(r.target, {"concept": concept, "method": r.target})
            if r.extra.get("start") == "target":
                row.setdefault("no attack (c*)", r.asr_unattacked)
            else:
                row.setdefault("no attack (anchor)", r.asr_unattacked)
            row[f"{r.attack} [{_budget_text(r)}]"] = "n/a" if r.extra.get("not_applicable") else r.asr
        rows += list(by_target.values())
    return rows


def cost_rows(results: dict[str, list[AttackResult]], sanity: dict[str, AttackResult]) -> list[dict]:
    rows = []
    for concept, rs in results.items():
        for r in rs + ([sanity[concept]] if concept in sanity else []):
            rows.append({"concept": concept, "method": r.target, "attack": r.attack,
                         "ASR": f"n/a: {r.extra['not_applicable']}" if r.extra.get("not_applicable") else r.asr,
                         "attempts": r.attempts, "queries": r.cost["queries"],
                         "gradient steps": r.cost["gradient_steps"], "attack s": r.cost["seconds"],
                         "found": "; ".join(str(f.get("prompt", f.get("eta", f.get("soft", "")))) for f in r.found)})
    return rows


OVERRIDE_NOTE = ("Early-scale override: the first k scales are forced to the tokens the original model draws for "
                 "the concept prompt, the attacked model samples the rest (best of N early-token draws, the one the "
                 "detector scores highest). An eraser confined to the scales < k never sees this attack, so the "
                 "ASR at k = 1 is an upper bound for every scale-0-only eraser: if it is high, no scale-0 edit can "
                 "stop it -- the later scales still draw the concept from an early layout.")
LOCALISE_NOTE = ("Localisation: the attacked condition at some scales, the start prompt's own condition at the "
                 "others. 'scales >= 1' high: the concept comes back at scales an edit of scale 0 never sees; "
                 "'up to k' reaching the full ASR at small k: the attack acts through the early scales.")


def localisation_rows(results: dict[str, list[AttackResult]]) -> list[dict]:
    """One row per (concept, method, attack) that was localised: ASR per scale set."""
    rows = []
    for concept, rs in results.items():
        for r in rs:
            loc = r.extra.get("localisation")
            if loc:
                rows.append({"concept": concept, "method": r.target, "attack": r.attack, "ASR (all scales)": r.asr,
                             **loc["asr"]})
    return rows


def override_rows(results: dict[str, list[AttackResult]]) -> list[dict]:
    """One row per (concept, method, k) of the early-scale override: ASR of draw 0 and best of N."""
    rows = []
    for concept, rs in results.items():
        for r in rs:
            for k, v in (r.extra.get("per_k") or {}).items():
                rows.append({"concept": concept, "method": r.target, "k (scales forced)": int(k),
                             "ASR (1 draw)": v["asr"], f"ASR (best of {r.extra.get('best_of')})": v["asr_best_of"]})
    return rows


def write_outputs(results: dict[str, list[AttackResult]], sanity: dict[str, AttackResult], report: dict,
                  out: Path) -> str:
    """Write ``table.md``, ``report.html``, ``curves/*.png`` and ``grids/*.png``; returns the ASR table."""
    rows = asr_rows(results)
    fmt = {"attack s": "{:.1f}"}
    md = markdown_table(rows)
    md_cost = markdown_table(cost_rows(results, sanity), floatfmt=fmt)
    lines = [md, "", "ASR = fraction of attempts (start prompt x evaluation seed) the detector flags.", ""]
    if sanity:
        lines += ["Sanity, soft-prompt from the anchor prompts against the original model: "
                  + ", ".join(f"{c} {r.asr:.3f}" for c, r in sanity.items()), ""]
    loc, ovr = localisation_rows(results), override_rows(results)
    if ovr:
        lines += ["## Early-scale override per k", "", markdown_table(ovr), "", OVERRIDE_NOTE, ""]
    if loc:
        lines += ["## Attack localisation (ASR with the attacked condition at these scales only)", "",
                  markdown_table(loc), "", LOCALISE_NOTE, ""]
    write_text(out / "table.md", "\n".join(lines + ["", md_cost, ""]))
    rep = Report("sace attack: robustness of erased models",
                 subtitle=f"model {report['model']}, {report['n_prompts']} start prompts x "
                          f"{len(report['eval_seeds'])} evaluation seeds per attack and method; "
                          f"search seeds {report['search_seeds']}, evaluation seeds {report['eval_seeds']}")
    rep.heading("ASR per attack (budget per start prompt in brackets)", 2)
    rep.table(rows)
    if sanity:
        rep.text("Sanity (soft-prompt from the anchor prompts against the original model): "
                 + ", ".join(f"{c}: ASR {r.asr:.3f}" for c, r in sanity.items()))
    if ovr:
        rep.heading("Early-scale override: ASR per number of forced scales k", 2)
        rep.text(OVERRIDE_NOTE)
        rep.table(ovr)
    if loc:
        rep.heading("Attack localisation: where does the concept come back?", 2)
        rep.text(LOCALISE_NOTE)
        rep.table(loc)
        for concept, rs in results.items():
            for attack in dict.fromkeys(r.attack for r in rs if r.extra.get("localisation")):
                group = [r for r in rs if r.attack == attack and r.extra.get("localisation")]
                xs = list(range(len(group[0].extra["localisation"]["up_to"])))
                series = {r.target: {"mean": r.extra["localisation"]["up_to"]} for r in group}
                path = plot_curves(xs, series, out / "curves" / f"localise_{_safe(concept)}_{_safe(attack)}.png",
                                   xlabel="k (attacked condition at scales 0..k, clean after)", ylabel="ASR",
                                   title=f"{concept}: {attack}, localised", ylim=(-0.02, 1.02))
                rep.image(path, caption=f"{concept}, {attack}: ASR when the attacked condition conditions only the "
                                        "scales 0..k (k = K-1: the attack as it is)")
    rep.heading("Cost of every attack (measured; the attack's own work, not its measurement)", 2)
    rep.table(cost_rows(results, sanity), floatfmt=fmt)
    for concept, rs in results.items():
        rep.heading(f"{concept}: ASR vs budget", 2)
        for attack in dict.fromkeys(r.attack for r in rs):
            group = [r for r in rs if r.attack == attack and r.curve]
            if not group:       # an attack that does not apply to this model has no curve
                continue
            xs = [p.budget for p in group[0].curve]
            series = {r.target: {"mean": [p.asr for p in r.curve]} for r in group if len(r.curve) == len(xs)}
            path = plot_curves(xs, series, out / "curves" / f"{_safe(concept)}_{_safe(attack)}.png",
                               xlabel=f"{group[0].budget['unit']} per start prompt",
                               ylabel="ASR", title=f"{concept}: {attack}", ylim=(-0.02, 1.02))
            rep.image(path, caption=f"{concept}, {attack}: ASR on the evaluation seeds vs budget")
        rep.heading(f"{concept}: successful attack images", 3)
        for r in rs:
            if r.success_images is None:
                continue
            g = save_grid(r.success_images, min(8, len(r.success_images)),
                          out / "grids" / f"{_safe(concept)}_{_safe(r.target)}_{_safe(r.attack)}.png",
                          title=f"{r.target} / {r.attack}: {r.successes}/{r.attempts} flagged")
            rep.image(g, caption="; ".join(dict.fromkeys(r.success_labels)))
    rep.details("metrics.json", {k: v for k, v in report.items() if k != "table_markdown"})
    rep.write(out / "report.html")
    return md
