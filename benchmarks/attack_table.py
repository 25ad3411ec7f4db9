"""One ASR table from several ``sace attack`` runs (e.g. one run per concept, method or attack started in
parallel on a shared machine; every run uses the same seeds and budgets, so the cells are those a single
``sace attack --concept sneaker,trouser`` run computes).

    python benchmarks/attack_table.py out/atk/*/metrics.json
"""

from __future__ import annotations

import json
import sys

from sace.attacks.base import AttackResult
from sace.attacks.report import asr_rows, cost_rows
from sace.reporting import markdown_table

ORDER = {"original": 0, "SACE": 1, "S-VARE": 2, "ESD": 3, "negative prompt": 4}
ATTACK_ORDER = {"soft-prompt": 0, "concept-vector": 1, "discrete": 2}


def main(paths: list[str]) -> None:
    results: dict[str, list[AttackResult]] = {}
    sanity: dict[str, AttackResult] = {}
    for p in paths:
        d = json.loads(open(p).read())
        for concept, rows in d["concepts"].items():
            for r in rows:
                res = AttackResult.from_dict(r)
                if res.extra.get("start") == "anchor" and res.attack.startswith("soft"):
                    sanity[concept] = res
                else:
                    results.setdefault(concept, []).append(res)
        for concept, r in d.get("sanity", {}).items():
            sanity[concept] = AttackResult.from_dict(r)
    for rs in results.values():
        rs.sort(key=lambda r: (ATTACK_ORDER.get(r.attack, 9), ORDER.get(r.target, 9)))
    print(markdown_table(asr_rows(results)))
    print()
    print(markdown_table(cost_rows(results, sanity), floatfmt={"attack s": "{:.1f}"}))
    for c, r in sanity.items():
        print(f"\nsanity ({c}): soft-prompt from the anchor prompts against the original model: ASR {r.asr:.3f} "
              f"({r.successes}/{r.attempts})")


if __name__ == "__main__":
    main(sys.argv[1:])
