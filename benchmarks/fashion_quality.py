"""Quality and speed of the embedded ``fashion`` model; writes its model card.

Measures (see ``sace.recipes.fashion_card``): classifier test accuracy, classifier accuracy on VAE
reconstructions, class accuracy of generated images for training captions and held-out paraphrases
(50 per class by default), per-class classifier-feature KID, and the time to generate 8 images.

    python benchmarks/fashion_quality.py                       # measure the installed model
    python benchmarks/fashion_quality.py --write-card          # ... and write MODEL_CARD.md + metrics.json
    python benchmarks/fashion_quality.py --speed-only          # just the 8-image generation time
    python benchmarks/fashion_quality.py --guidance 4 --temperature 0.9   # try other sampling settings
"""

from __future__ import annotations

import argparse
import json

import torch

from sace.generate import SamplingSettings
from sace.models.registry import load_model
from sace.recipes.fashion_card import THRESHOLDS, generation_seconds, measure_fashion_model, write_model_card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion")
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--no-kid", action="store_true")
    ap.add_argument("--write-card", action="store_true", help="write MODEL_CARD.md/metrics.json into the "
                                                               "model folder (the installed asset by default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    s = SamplingSettings(args.guidance, args.temperature, args.top_k, args.top_p)
    if args.speed_only:
        print(f"8 images at {s.resolved(model)}: {generation_seconds(model, settings=s):.3f} s "
              f"(target <= {THRESHOLDS['gen8_seconds']} s)")
        return
    m = measure_fashion_model(model, n_per_class=args.n_per_class, settings=s, kid=not args.no_kid,
                              progress=True)
    short = {k: v for k, v in m.items() if not isinstance(v, list)}
    print(json.dumps(short, indent=1))
    for k, thr in THRESHOLDS.items():
        if k in m:
            ok = m[k] <= thr if k == "gen8_seconds" else m[k] >= thr
            print(f"{k:28s} {m[k]:.4f}  target {'<=' if k == 'gen8_seconds' else '>='} {thr}  "
                  f"{'ok' if ok else 'MISSED'}")
    if args.write_card:
        from sace.models.registry import get_spec
        folder = get_spec(args.model).folder
        print("wrote", write_model_card(m, folder))


if __name__ == "__main__":
    main()
