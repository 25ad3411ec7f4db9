"""Where do the anchor class's images go under an adapter? One class, one method, one training seed.

Trains ``--method`` (default ``rsace``) on ``--concept`` with the model's defaults, then generates 30 images of the
anchor class's training captions (canonical noun, then synonyms; seeds 1000 + i) and 30 of the training
anchor prompts, before and after, and counts the fashion classifier's top-1 classes. Saves the four grids
(8 images per row, rows in caption order) next to the JSON. Found with it (issue 21, ``fashion``,
``--concept ankle_boot --seed 1``, before the synonyms joined the retain set): the anchor prompts kept 30/30
sneakers, the anchor class's captions 22/30 -- every "trainer" image had become a top.

    python benchmarks/anchor_images.py --concept ankle_boot --seed 1 --out out/anchor-images
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    from sace.domains import resolve_concept
    from sace.domains.fashion import classes as fd
    from sace.domains.fashion.classifier import load_classifier
    from sace.erasure import catalogue
    from sace.erasure.audit import audit_concept
    from sace.generate import generate
    from sace.images import save_grid
    from sace.io import write_json
    from sace.models.registry import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion")
    ap.add_argument("--concept", required=True)
    ap.add_argument("--method", default="rsace")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="out/anchor-images")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, clf = load_model(args.model), load_classifier()
    _, spec = audit_concept(model, resolve_concept(model, args.concept))
    caps = fd.training_captions(spec.anchor_name)
    sets = {"anchor_class_captions": [caps[i % len(caps)] for i in range(30)], "anchor_prompts": spec.anchors[:30]}

    def count(tag: str) -> dict:
        res = {}
        for name, prompts in sets.items():
            images = generate(model, prompts, [1000 + i for i in range(len(prompts))], batch_size=16)
            pred = clf.predict(images).tolist()
            res[name] = {"classes": {fd.class_key(j): pred.count(j) for j in sorted(set(pred))},
                         "wrong": sorted({p for p, y in zip(prompts, pred) if fd.class_key(y) != spec.anchor_name})}
            save_grid(images[:24], 8, out / f"{tag}-{name}.png")
        return res

    before = count("original")
    entry = catalogue.get(args.method)
    entry.trainer(model, spec, entry.make_config(model, seed=args.seed), name="probe").train(progress=False)
    after = count(args.method)
    write_json(out / "anchor_images.json", {"args": vars(args), "anchor": spec.anchor_name, "before": before,
                                            "after": after})
    print(json.dumps({"before": before, "after": after}, indent=1))


if __name__ == "__main__":
    main()
