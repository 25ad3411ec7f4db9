"""Train one method of the catalogue with JSON overrides of its defaults into an adapter folder (screening).

`sace erase` exposes the common settings as flags; screens of other fields (robust SACE's ``adv_weight``,
``adv_steps``, ``adv_scales`` ...) need the whole config. The concept is trained as defined, not audited --
the way `sace attack` trains its methods, so the folder is attacked like the attack table's own adapters:

    python benchmarks/train_with_overrides.py --concept sneaker --method rsace --set '{"seed": 1, "adv_weight": 2}' \\
        --out out/sneaker-rsace-aw2-s1
    sace attack --concept sneaker --methods original --adapter out/sneaker-rsace-aw2-s1 \\
        --attacks soft,vector,discrete,inversion --no-sanity --no-localise --out out/atk-aw2-s1
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion")
    ap.add_argument("--concept", required=True)
    ap.add_argument("--method", default="rsace", help="a trained method of the catalogue (sace.erasure.catalogue)")
    ap.add_argument("--set", default="{}", help="JSON overrides of the method's defaults (seed included)")
    ap.add_argument("--out", required=True, help="adapter folder to write")
    ap.add_argument("--concept-set", default="{}", help="fashion domain: JSON keyword arguments of "
                    "sace.domains.fashion.concepts.fashion_concept (e.g. '{\"synonym_retain\": 1}')")
    args = ap.parse_args()

    from sace.domains import resolve_concept
    from sace.erasure import catalogue
    from sace.models.registry import load_model

    model = load_model(args.model)
    overrides = json.loads(args.set)
    seed = overrides.pop("seed", 0)
    entry = catalogue.get(args.method)
    t0 = time.perf_counter()
    concept_kw = json.loads(args.concept_set)
    if concept_kw:
        # the concept resolve_concept would give, but with other construction settings: the same anchor (the
        # model's own default anchors first, e.g. fashion's coat -> dress) and the same static word checks
        from sace.concepts.spec import check_words
        from sace.domains import default_anchor
        from sace.domains.fashion.concepts import fashion_concept
        concept = fashion_concept(args.concept, default_anchor(model, args.concept), **concept_kw)
        check_words(concept)
    else:
        concept = resolve_concept(model, args.concept)
    res = entry.train(model, concept, entry.make_config(model, seed=seed, **overrides),
                      out_dir=args.out, progress=False)
    print(f"trained {args.method} on {args.concept} (seed {seed}, {overrides}) in {time.perf_counter() - t0:.1f} s, "
          f"{res.tokens_per_step} tokens/step -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
