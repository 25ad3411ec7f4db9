"""Batch generation over prompt lists: seeds per image, batching, PNG output that resumes.

Every image gets its own seeded ``torch.Generator`` (see :func:`sace.sampling.make_generators`), so an
image's random stream depends only on its seed, not on the batch it ran in or on the process that ran it.
Its pixels can still move by float rounding between batch compositions (matrix kernels differ by batch
size), so sharded runs (:mod:`sace.distributed`) keep whole batches together and are byte-identical to a
single-process run with the same batch size, device type and thread count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import validation
from .adapters import adapter_names
from .errors import SaceError
from .fingerprint import digest, model_hashes, weights_hash
from .folders import open_output
from .images import load_png, png_ok, save_png  # noqa: F401  (load_png re-exported: one PNG implementation)
from .io import write_json
from .models.text import check_prompts
from .sampling import SamplingSettings, make_generators, sample

__all__ = ["SamplingSettings", "generate", "generate_to_dir", "image_name", "save_png", "write_generation_index"]


@torch.no_grad()
def generate(model, prompts: Sequence[str], seeds: Sequence[int], *, settings: SamplingSettings | None = None,
             negative_prompt: str | None = None, batch_size: int = 32, progress: bool = False,
             desc: str = "generate", conditions_fn=None, uncond_fn=None) -> Tensor:
    """Images for ``prompts[i]`` with ``seeds[i]``.

    Args:
        model: a scale-wise model (with a text encoder).
        prompts, seeds: equal-length lists (non-empty prompts; int seeds).
        settings: sampling settings (default: the model's).
        negative_prompt: encoded and used as the guidance's unconditional side instead of the null condition.
        batch_size: images per sampling pass (memory knob; results do not depend on it).
        conditions_fn: ``prompts -> Condition`` or a per-scale list of them (default: encode the prompts);
            used e.g. by the scale-0 prompt-swap baseline.
        uncond_fn: ``prompts -> Condition`` for the unconditional side (default: the null condition, or the
            negative prompt).
    Returns:
        ``(N, 3, H, W)`` float32 in [0, 1] on the CPU.
    Raises:
        SaceError: empty prompt, length mismatch.
    """
    prompts = check_prompts(prompts)
    if len(seeds) != len(prompts):
        raise SaceError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    seeds = validation.seeds(seeds)
    validation.batch_size(batch_size)
    validation.negative_prompt(negative_prompt)
    s = (settings or SamplingSettings()).resolved(model)
    out = []
    rng = range(0, len(prompts), batch_size)
    if progress:
        rng = tqdm(rng, desc=desc, total=(len(prompts) + batch_size - 1) // batch_size)
    for i in rng:
        ps, ss = prompts[i:i + batch_size], seeds[i:i + batch_size]
        cond = conditions_fn(ps) if conditions_fn is not None else model.encode_prompts(ps)
        if uncond_fn is not None:
            unc = uncond_fn(ps)
        else:
            unc = model.encode_prompts([negative_prompt] * len(ps)) if negative_prompt else None
        # generators live on the model's device (torch.multinomial needs a generator of its device)
        gen = make_generators(ss, device=model.device)
        res = sample(model, cond, uncond=unc, generator=gen, keep_logits=False, **s)
        out.append(res.images.float().cpu())
    return torch.cat(out)


def image_name(index: int, prompt: str, seed: int) -> str:
    """A stable file stem for one image: ``{index:05d}_s{seed}``."""
    return f"{index:05d}_s{seed}"


#: the files a generation run owns in its folder (what ``--force`` replaces)
GENERATED_FILES = ("[0-9][0-9][0-9][0-9][0-9]*_s*.png", "grid.png", "index.json")


def generation_record(model, prompts: Sequence[str], seeds: Sequence[int], settings: SamplingSettings | None,
                      negative_prompt: str | None, batch_size: int) -> dict:
    """What determines a folder of generated images (its manifest, :mod:`sace.folders`): the model's weights
    hashes (with the attached adapters and which are active), the resolved sampling settings, the negative
    prompt, the batch size (pixels may move by float rounding between batch compositions) and a digest of
    the prompts and seeds."""
    active = sorted({n for m in model.transformer.modules() for n, br in getattr(m, "branches", {}).items()
                     if br.active})
    return {"model": getattr(model, "name", None), "hashes": model_hashes(model),
            "adapters": {"attached": adapter_names(model), "active": active,
                         "weights": weights_hash(model.transformer) if adapter_names(model) else None},
            "sampling": (settings or SamplingSettings()).resolved(model), "negative_prompt": negative_prompt,
            "batch_size": int(batch_size), "count": len(prompts),
            "prompts_digest": digest([list(prompts), [int(s) for s in seeds]])}


def generate_to_dir(model, prompts: Sequence[str], seeds: Sequence[int], out_dir: str | os.PathLike, *,
                    indices: Sequence[int] | None = None, settings: SamplingSettings | None = None,
                    negative_prompt: str | None = None, batch_size: int = 32, skip_existing: bool = True,
                    progress: bool = False, force: bool = False, folder=None) -> list[Path]:
    """Generate and write ``out_dir/{index:05d}_s{seed}.png`` for every prompt; files that already exist
    are skipped (resume) -- only when the folder's manifest says they were made with these very settings.
    ``indices`` are the global positions (for sharded runs). Returns the paths.

    Args:
        force: replace a folder that holds images of other settings (else: SaceError).
        folder: an already opened :class:`sace.folders.OutputFolder` (the CLI's); default: open one here.
    Raises:
        SaceError: bad inputs, another run writing to ``out_dir``, or images of other settings there.
    """
    if folder is None:
        rec = generation_record(model, prompts, seeds, settings, negative_prompt, batch_size)
        with open_output(out_dir, "generate", rec, GENERATED_FILES, force=force) as f:
            paths = generate_to_dir(model, prompts, seeds, out_dir, indices=indices, settings=settings,
                                    negative_prompt=negative_prompt, batch_size=batch_size,
                                    skip_existing=skip_existing, progress=progress, folder=f)
            f.complete(images=len(paths))
            return paths
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    indices = list(range(len(prompts))) if indices is None else list(indices)
    paths = [out / f"{image_name(i, p, s)}.png" for i, p, s in zip(indices, prompts, seeds)]
    # a finished image is kept; one a killed run left truncated is made again
    todo = [j for j, p in enumerate(paths) if not (skip_existing and p.exists() and png_ok(p))]
    for a in range(0, len(todo), batch_size * 8):
        chunk = todo[a:a + batch_size * 8]
        imgs = generate(model, [prompts[j] for j in chunk], [seeds[j] for j in chunk], settings=settings,
                        negative_prompt=negative_prompt, batch_size=batch_size, progress=progress)
        for j, img in zip(chunk, imgs):
            save_png(img, paths[j])
    return paths


def write_generation_index(out_dir: str | os.PathLike, *, model: str | None, prompts: Sequence[str],
                           seeds: Sequence[int], paths: Sequence[Path], settings: dict,
                           negative_prompt: str | None, adapters: Sequence[str] = (), batch_size: int,
                           world_size: int = 1, shard_mode: str | None = None) -> Path:
    """The one writer of a generation's ``index.json``: the model, adapters, resolved sampling settings,
    negative prompt, batch size, world size and shard mode, the image count and ``images`` (``index``,
    ``prompt``, ``seed``, ``file``) in prompt order; returns its path."""
    path = Path(out_dir) / "index.json"
    write_json(path, {
        "model": model, "adapters": [str(a) for a in adapters], "settings": settings,
        "negative_prompt": negative_prompt, "batch_size": batch_size, "world_size": world_size,
        "shard_mode": shard_mode, "count": len(prompts),
        "images": [{"index": i, "prompt": p, "seed": s, "file": Path(f).name}
                   for i, (p, s, f) in enumerate(zip(prompts, seeds, paths, strict=True))]})
    return path
