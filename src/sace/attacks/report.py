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
