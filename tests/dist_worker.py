"""Worker of the multi-process tests: run it under ``python -m torch.distributed.run`` (or plainly).

    python -m torch.distributed.run --nproc_per_node 2 --master_port PORT tests/dist_worker.py \
        --model fashion --job job.json --out OUT_DIR

``job.json`` holds ``{"prompts": [...], "seeds": [...], "batch_size": n}``. The worker loads the model on
the CPU, calls :func:`sace.distributed.generate_sharded`, then :func:`sace.distributed.map_sharded` over
the written PNGs (mean pixel value per image), and rank 0 writes ``OUT_DIR/worker_result.json``.

Models without a text encoder get :class:`sace.models.text.HashTextEncoder`, a deterministic stand-in
that needs no download (the tiny fixture has it from the registry).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from sace.models.text import HashTextEncoder


def load_for_test(name: str):
    """``load_model(name)`` on the CPU; a model without a text encoder gets :class:`HashTextEncoder`."""
    from sace.models.registry import load_model

    model = load_model(name, device="cpu")
    if model.text_encoder is None:
        model.text_encoder = HashTextEncoder(model.transformer.cfg.text_channels)
    return model


def mean_pixel(path: str) -> float:
    from sace.generate import load_png

    return float(load_png(path).mean())


def _fail_on_last(i: int) -> int:
    if i == _LAST[0]:
        raise ValueError("item is the last one")
    return i


_LAST = [-1]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from sace.distributed import DistContext, generate_sharded, map_sharded

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    job = json.loads(Path(args.job).read_text())
    _LAST[0] = len(job["prompts"]) - 1
    ctx = DistContext()
    model = load_for_test(args.model)
    paths = generate_sharded(model, job["prompts"], job["seeds"], args.out, batch_size=job.get("batch_size", 32),
                             progress=False, ctx=ctx)
    # every process builds the same item list (the file names are deterministic)
    from sace.generate import image_name
    files = [str(Path(args.out) / f"{image_name(i, p, s)}.png")
             for i, (p, s) in enumerate(zip(job["prompts"], job["seeds"], strict=True))]
    means = map_sharded(mean_pixel, files, ctx=ctx)
    # a failure on one process is raised on every process (none waits forever for the others)
    from sace.errors import SaceError
    error = None
    try:
        map_sharded(_fail_on_last, list(range(len(files))), ctx=ctx)
    except SaceError as e:
        error = str(e)
    assert error is not None and "item is the last one" in error, error
    if ctx.is_main:
        from sace.io import write_json
        write_json(Path(args.out) / "worker_result.json",
                   {"world_size": ctx.world_size, "backend": ctx.backend, "paths": [str(p) for p in paths],
                    "means": means, "error": error, "n": len(files)})
    else:
        assert paths is None and means is None


if __name__ == "__main__":
    main()
