"""Scale-out: the same commands in one process or under ``accelerate launch`` / ``torchrun``.

Prompts (or any list of items) are split across processes, every process works on its shard, and the
results are gathered on rank 0 (``shared/docs/DESIGN.md``, "Scale-out"). Process control comes from
``accelerate.PartialState``: one plain process when no launcher set the environment, ``gloo`` between
CPU processes, ``nccl`` between GPUs. There is no home-made process pool.

Generation stays exact under sharding: every image has its own seeded generator (:mod:`sace.generate`),
and processes take whole global batches, so each image is computed in the same batch as in a
single-process run. (Batched kernels, text padding and the CPU's intra-op thread count move logits at
the level of float rounding, enough to change a PNG pixel by one level; files are byte-identical for
the same ``batch_size`` on the same kind of device with the same thread count.) An interrupted run
resumes by skipping the PNGs already on disk.

Launching: ``accelerate launch --multi_gpu --num_processes N script.py`` or ``torchrun --nproc_per_node N
script.py``; several CPU processes need ``torchrun`` (``accelerate launch --cpu`` starts one process
unless given an MPI hostfile). Typical use::

    ctx = DistContext()
    model = load_model("infinity-2b", device=ctx.device)
    paths = generate_sharded(model, prompts, seeds, "out/images")   # paths on rank 0, None elsewhere
    files = [f"out/images/{image_name(i, p, s)}.png" for i, (p, s) in enumerate(zip(prompts, seeds))]
    scores = map_sharded(detector, files)                           # same items on every process
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import SaceError
from .folders import OutputFolder
from .generate import (
    GENERATED_FILES,
    SamplingSettings,
    generate,
    generation_record,
    image_name,
    write_generation_index,
)
from .images import save_png
from .models.text import check_prompts

#: how :meth:`DistContext.shard_indices` splits ``range(n)`` across processes
SHARD_MODES = ("strided", "contiguous")


class DistContext:
    """This process's place in a (possibly single-process) job, from ``accelerate.PartialState``.

    Works unchanged under ``accelerate launch``, ``torchrun`` / ``python -m torch.distributed.run`` and as
    a plain ``python`` process (world size 1; no process group is created). The backend is ``nccl``
    when CUDA is available and ``gloo`` on CPU-only machines (``cpu=True`` forces the CPU even when a GPU
    is present). ``PartialState`` is a process-wide singleton, so every ``DistContext`` of a process
    shares one process group; creating several is cheap.

    Args:
        cpu: force CPU processes (gloo). Default: CPU exactly when CUDA is unavailable.
    Raises:
        SaceError: the launcher's environment is incomplete or the process group cannot be created.
    """

    def __init__(self, cpu: bool | None = None):
        try:
            from accelerate import PartialState
        except ImportError as e:  # pragma: no cover - accelerate is a dependency
            raise SaceError("sharded runs need `accelerate`: pip install accelerate") from e
        if cpu is None:
            cpu = not torch.cuda.is_available()
        try:
            # accelerate only builds a CPU (gloo) group when asked for the CPU explicitly
            self.state = PartialState(cpu=cpu)
        except (ValueError, RuntimeError) as e:
            raise SaceError(f"cannot join the distributed job ({e}); launch with `accelerate launch` or "
                            "`torchrun`, or run a plain `python` for one process") from e

    @property
    def rank(self) -> int:
        """Global process index, 0 .. world_size-1."""
        return int(self.state.process_index)

    @property
    def local_rank(self) -> int:
        """Process index on this machine (0 when not launched)."""
        return max(0, int(self.state.local_process_index))

    @property
    def world_size(self) -> int:
        """Number of processes in the job (1 without a launcher)."""
        return int(self.state.num_processes)

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes gathered results)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        """This process's device (``cuda:<local_rank>`` on GPUs, ``cpu`` otherwise)."""
        return torch.device(self.state.device)

    @property
    def backend(self) -> str | None:
        """``'nccl'``, ``'gloo'``, ... or ``None`` for a single plain process."""
        return self.state.backend

    def barrier(self) -> None:
        """Wait until every process gets here (no-op in a single process)."""
        if self.is_distributed:
            self.state.wait_for_everyone()

    def shard_indices(self, n: int, mode: str = "strided") -> list[int]:
        """The indices of ``range(n)`` this process handles.

        ``strided``: rank r takes ``r, r+W, r+2W, ...`` (balances lists sorted by length or difficulty);
        ``contiguous``: rank r takes one consecutive block, the first ``n % W`` blocks one item longer.
        Both are deterministic and partition ``range(n)`` exactly (a rank may get none when ``n < W``).

        Raises:
            SaceError: negative ``n`` or an unknown mode.
        """
        return shard_indices(n, self.rank, self.world_size, mode)

    def gather_objects(self, objects: list) -> list:
        """Concatenate every process's list in rank order (``accelerate.utils.gather_object``).

        Every process receives the full list (an all-gather; rank 0 is the one meant to use it). Objects
        must be picklable; in a single process the list is returned unchanged. This is a collective: every
        process must call it.
        """
        if not isinstance(objects, list):
            raise SaceError(f"gather_objects takes a list, got {type(objects).__name__}")
        if not self.is_distributed:
            return list(objects)
        from accelerate.utils import gather_object

        return list(gather_object(objects))

    def __repr__(self) -> str:
        return (f"DistContext(rank={self.rank}, world_size={self.world_size}, device={self.device}, "
                f"backend={self.backend})")


def shard_indices(n: int, rank: int, world_size: int, mode: str = "strided") -> list[int]:
    """Indices of ``range(n)`` assigned to ``rank`` of ``world_size`` (see :meth:`DistContext.shard_indices`).

    Raises:
        SaceError: ``n < 0``, ``world_size < 1``, ``rank`` outside ``[0, world_size)`` or an unknown mode.
    """
    if n < 0:
        raise SaceError(f"cannot shard a negative number of items ({n})")
    if world_size < 1 or not 0 <= rank < world_size:
        raise SaceError(f"rank {rank} is not in a job of {world_size} processes")
    if mode == "strided":
        return list(range(rank, n, world_size))
    if mode == "contiguous":
        base, extra = divmod(n, world_size)
        start = rank * base + min(rank, extra)
        return list(range(start, start + base + (1 if rank < extra else 0)))
    raise SaceError(f"unknown shard mode {mode!r}; use one of {', '.join(SHARD_MODES)}")


def _run_collectively(ctx: DistContext, work: Callable[[], list]) -> list:
    """Run ``work`` on this process, gather its list from every process, and raise on every process if
    any of them failed (so that no process waits forever for a peer that crashed)."""
    try:
        local: list = [(ctx.rank, None, work())]
    except Exception as e:  # noqa: BLE001 - reported to every process below
        if not ctx.is_distributed:
            raise
        msg = str(e) if isinstance(e, SaceError) else "".join(traceback.format_exception_only(type(e), e)).strip()
        local = [(ctx.rank, msg, None)]
    gathered = ctx.gather_objects(local)
    errors = [f"rank {r}: {m}" for r, m, _ in gathered if m is not None]
    if errors:
        raise SaceError("sharded work failed on " + "; ".join(errors))
    out: list = []
    for _, _, part in sorted(gathered, key=lambda t: t[0]):
        out.extend(part)
    return out


def open_collectively(folder: OutputFolder, ctx) -> None:
    """Open ``folder`` on rank 0 of a sharded job; a refusal there is raised on every rank (no process
    waits for a peer that stopped)."""
    _run_collectively(ctx, lambda: [folder.open()][:0] if ctx.is_main else [])


def batch_plan(n: int, batch_size: int, rank: int, world_size: int, mode: str = "strided") -> list[list[int]]:
    """The global batches ``[0, bs), [bs, 2bs), ...`` of ``range(n)`` that ``rank`` generates.

    Sharding whole batches (rather than single images) keeps every image in the batch it has in a
    single-process run with the same ``batch_size``; batched kernels and text padding make results
    depend on the batch at the level of float rounding, so this is what makes the files byte-identical
    for every world size. ``mode`` distributes batches as :func:`shard_indices` distributes items.

    Raises:
        SaceError: ``batch_size < 1`` or bad ``n``/``rank``/``world_size``/``mode``.
    """
    if batch_size < 1:
        raise SaceError(f"batch_size must be >= 1, got {batch_size}")
    if n < 0:
        raise SaceError(f"cannot shard a negative number of items ({n})")
    batches = [list(range(a, min(a + batch_size, n))) for a in range(0, n, batch_size)]
    return [batches[b] for b in shard_indices(len(batches), rank, world_size, mode)]


def generate_sharded(
    model,
    prompts: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    settings=None,
    batch_size: int = 32,
    negative_prompt: str | None = None,
    progress: bool = True,
    shard_mode: str = "strided",
    ctx: DistContext | None = None,
    adapters: Sequence[str] = (),
    force: bool = False,
) -> list[Path] | None:
    """Generate ``out_dir/{i:05d}_s{seed}.png`` for every prompt, split across the job's processes.

    The prompt list is cut into global batches of ``batch_size`` and each process generates whole
    batches (:func:`batch_plan`), so every file is byte-identical to the one a single-process
    :func:`sace.generate.generate_to_dir` run with the same ``batch_size`` writes, whatever the world
    size. Existing PNGs are kept (resume): a batch whose files all exist is skipped; a partly written
    batch is regenerated as a whole (exactly as before) and only its missing files are written. Then all
    processes synchronise and rank 0 writes ``out_dir/index.json`` atomically
    (:func:`sace.generate.write_generation_index`, the one writer of that file).

    Args:
        model: a scale-wise model with a text encoder, on this process's device (``ctx.device``).
        prompts: N non-empty prompts; seeds: N ints (image i uses ``seeds[i]``).
        out_dir: output folder; on several machines it must be a shared filesystem.
        settings: :class:`sace.generate.SamplingSettings` (default: the model's defaults).
        batch_size: images per sampling pass (memory knob; keep it fixed across resumed runs).
        negative_prompt: the guidance's unconditional side instead of the learned null condition.
        progress: a progress bar on rank 0.
        shard_mode: ``'strided'`` or ``'contiguous'`` distribution of batches over processes.
        ctx: the job (default: a new :class:`DistContext`).
        adapters: the adapter folders active on ``model`` (recorded in ``index.json``).
        force: replace a folder holding images of other settings (rank 0 checks the folder's manifest
            and holds its lock; see :mod:`sace.folders`).
    Returns:
        On rank 0 the N PNG paths in prompt order; ``None`` on every other rank.
    Raises:
        SaceError: empty prompts, prompts/seeds length mismatch, bad ``batch_size``, generation failed on
            any process (raised on every process, naming the rank), or images missing after the run
            (``out_dir`` not shared between machines).
    """
    prompts = check_prompts(prompts)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(prompts):
        raise SaceError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    ctx = ctx or DistContext()
    out = Path(out_dir)
    names = [f"{image_name(i, p, s)}.png" for i, (p, s) in enumerate(zip(prompts, seeds, strict=True))]
    paths = [out / n for n in names]
    plan = batch_plan(len(prompts), batch_size, ctx.rank, ctx.world_size, shard_mode)
    folder = OutputFolder(out, "generate", generation_record(model, prompts, seeds, settings, negative_prompt,
                                                             batch_size), GENERATED_FILES, force=force)
    open_collectively(folder, ctx)   # stale or foreign images are refused before any process writes
    try:
        return _generate_shards(model, prompts, seeds, out, paths, names, plan, ctx, folder, settings=settings,
                                batch_size=batch_size, negative_prompt=negative_prompt, progress=progress,
                                shard_mode=shard_mode, adapters=adapters)
    finally:
        folder.close()


def _generate_shards(model, prompts, seeds, out, paths, names, plan, ctx, folder, *, settings, batch_size,
                     negative_prompt, progress, shard_mode, adapters):
    def work() -> list:
        out.mkdir(parents=True, exist_ok=True)
        todo = [b for b in plan if not all(paths[i].exists() for i in b)]
        it = todo
        if progress and ctx.is_main and todo:
            it = tqdm(todo, desc=f"generate (rank 0 of {ctx.world_size})")
        for b in it:
            missing = [i for i in b if not paths[i].exists()]
            imgs = generate(model, [prompts[i] for i in b], [seeds[i] for i in b], settings=settings,
                            negative_prompt=negative_prompt, batch_size=len(b))
            for i, img in zip(b, imgs, strict=True):
                if i in missing:
                    save_png(img, paths[i])
        return []

    _run_collectively(ctx, work)  # also the barrier: every shard is on disk when this returns
    if not ctx.is_main:
        return None
    missing = [n for n, p in zip(names, paths, strict=True) if not p.exists()]
    if missing:
        raise SaceError(f"{len(missing)} images are not in {out} after generation (first: {missing[0]}); with "
                        "several machines the output folder must be on a filesystem they all share")
    write_generation_index(out, model=getattr(model, "name", None), prompts=prompts, seeds=seeds, paths=paths,
                           settings=(settings or SamplingSettings()).resolved(model), negative_prompt=negative_prompt,
                           adapters=adapters, batch_size=batch_size, world_size=ctx.world_size, shard_mode=shard_mode)
    folder.complete(images=len(paths))
    return paths


def map_sharded(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    batch_size: int | None = None,
    shard_mode: str = "strided",
    ctx: DistContext | None = None,
) -> list | None:
    """Apply ``fn`` to every item, split across the job's processes; results in item order on rank 0.

    For sharded evaluation, e.g. detector scores per generated image. Every process must pass the same
    ``items`` (a list of file paths is cheap to build everywhere). This is a collective: every process must
    call it.

    Args:
        fn: ``item -> result`` (picklable result); with ``batch_size`` set, ``list of items -> list of
            results`` of the same length (a batched detector).
        items: the N inputs.
        batch_size: apply ``fn`` to chunks of at most this many of the process's items.
        shard_mode: ``'strided'`` or ``'contiguous'``.
        ctx: the job (default: a new :class:`DistContext`).
        adapters: the adapter folders active on ``model`` (recorded in ``index.json``).
    Returns:
        On rank 0 the N results with ``result[i] = fn(items[i])``; ``None`` on every other rank.
    Raises:
        SaceError: ``fn`` failed on any process (raised on every process, naming the rank), a batched ``fn``
            returned the wrong number of results, or a bad ``batch_size``.
    """
    items = list(items)
    if batch_size is not None and batch_size < 1:
        raise SaceError(f"batch_size must be >= 1 or None, got {batch_size}")
    ctx = ctx or DistContext()
    idx = ctx.shard_indices(len(items), shard_mode)

    def work() -> list:
        if batch_size is None:
            return [(i, fn(items[i])) for i in idx]
        res = []
        for a in range(0, len(idx), batch_size):
            chunk = idx[a:a + batch_size]
            got = list(fn([items[i] for i in chunk]))
            if len(got) != len(chunk):
                raise SaceError(f"batched fn returned {len(got)} results for {len(chunk)} items")
            res.extend(zip(chunk, got, strict=True))
        return res

    pairs = _run_collectively(ctx, work)
    if not ctx.is_main:
        return None
    pairs.sort(key=lambda t: t[0])
    if [i for i, _ in pairs] != list(range(len(items))):  # pragma: no cover - guarded by shard_indices
        raise SaceError("gathered results do not cover every item exactly once")
    return [r for _, r in pairs]
