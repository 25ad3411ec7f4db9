"""What does the judge call each class's plain images? The no-attack floor of every ASR on the fashion domain.

The attacks' success rule is the fashion classifier's top-1 class. When the *original* model's images of
another class's plain training captions are already judged as class ``c`` some share of the time, an eraser of
``c`` that keeps that other class as it is (what ACC_i asks for) keeps that share, and an attacker reaches it by
typing the other class's name: no ASR of ``c`` can be driven below it without changing a neighbour. This
script draws ``--n`` images per class (training captions, seeds ``--seed0``...) with the model's default
sampling and prints the confusion matrix (rows: prompted class, columns: judged class) and, per class, the
largest share coming in from another class.

    python benchmarks/judge_confusion.py --model fashion --n 100 --out benchmarks/results_judge_confusion_fashion.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    from sace.domains.fashion import classes as fd
    from sace.domains.fashion.classifier import load_classifier
    from sace.generate import generate
    from sace.io import write_json
    from sace.models.registry import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion", help="a model of the fashion domain (fashion, fashion-var)")
    ap.add_argument("--n", type=int, default=100, help="images per class")
    ap.add_argument("--seed0", type=int, default=50_000, help="first image seed (other than the benchmarks')")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, clf = load_model(args.model), load_classifier()
    k = fd.NUM_CLASSES
    conf = torch.zeros(k, k, dtype=torch.long)
    for c in range(k):
        caps = fd.training_captions(c)
        pred = clf.predict(generate(model, [caps[i % len(caps)] for i in range(args.n)],
                                    [args.seed0 + i for i in range(args.n)], batch_size=args.batch_size))
        conf[c] = torch.bincount(pred, minlength=k)
    names = [fd.class_key(i) for i in range(k)]
    print(f"{args.model}: rows = prompted class, columns = judged class ({args.n} images per row)")
    print(" " * 11 + " ".join(f"{n[:7]:>7}" for n in names))
    for i in range(k):
        print(f"{names[i]:>10} " + " ".join(f"{int(v):7d}" for v in conf[i]))
    floor = {}
    for t in range(k):
        src = max((j for j in range(k) if j != t), key=lambda j: int(conf[j, t]))
        floor[names[t]] = {"share": int(conf[src, t]) / args.n, "from": names[src]}
        print(f"{names[t]:>10}: {floor[names[t]]['share']:.2f} of {names[src]}'s images are judged {names[t]}")
    if args.out:
        write_json(args.out, {"model": args.model, "n": args.n, "seed0": args.seed0, "classes": names,
                              "confusion": conf.tolist(), "floor": floor})
        print("->", args.out)


if __name__ == "__main__":
    main()
