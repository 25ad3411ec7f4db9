"""The one training loop of every trained erasure method (SACE, S-VARE, ESD): freeze the base model, attach
a zero-initialised adapter, optimise an :class:`Objective` with AdamW, clip gradients, stop on non-finite
values, checkpoint and resume, log, write metadata. One writer for the adapter folder.

An objective only says what to attach, what to precompute from the frozen model and what its losses are
(the ESD recipe's shape: ``esd_sd.py`` -- the loss is a line, the loop is shared).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..adapters import Adapter, AdapterConfig, attach_adapter, base_model_hash, save_adapter
from ..errors import SaceError
from ..io import write_json
from ..validation import check_train_config, output_dir
from .checkpoints import read_checkpoint, write_checkpoint
from .cost import PeakMemory


@dataclass
class OptimSettings:
    """AdamW and loop settings of one training run."""

    steps: int
    lr: float
    betas: tuple[float, float] = (0.9, 0.97)
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0                 # seeds the trainer's generator (batches, per-step draws) and the adapter init
    checkpoint_every: int = 50


class Objective:
    """What a method trains. Subclasses set ``key`` (checkpoint/metadata tag), ``title`` and ``progress_keys``
    and implement the four methods below."""

    key = "objective"
    title = "objective"
    progress_keys: tuple[str, ...] = ("loss",)

    def adapter_config(self, name: str | None) -> tuple[AdapterConfig, int | None]:
        """The adapter to attach and the seed of its initialisation (``None``: no random init)."""
        raise NotImplementedError

    def optim(self) -> OptimSettings:
        raise NotImplementedError

    def prepare(self, trainer: Trainer) -> None:
        """Precompute inputs and frozen-teacher outputs (the new adapter is zero, so the model is the teacher)."""

    def step(self, trainer: Trainer) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        """Yield ``(loss, logged values)`` once per optimiser step of one training step; the trainer
        back-propagates and steps after each yield (S-VARE yields twice)."""
        raise NotImplementedError

    def tokens_per_step(self, trainer: Trainer) -> int:
        """Transformer tokens processed per training step."""
        raise NotImplementedError

    def metadata(self, trainer: Trainer) -> dict:
        """Method-specific adapter metadata."""
        return {}

    def state_dict(self) -> dict:
        """The objective's own training state besides the adapter (e.g. an inner adversary's variables),
        saved in checkpoints; empty for objectives without one."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` when a checkpoint is resumed."""


@dataclass
class TrainResult:
    """A finished training run (the adapter stays attached to the model)."""

    name: str
    adapter: Adapter | None
    seconds: float
    steps: int
    tokens_per_step: int
    log: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    folder: Path | None = None


class Trainer:
    """Trains ``objective`` on ``model`` (see the module docstring).

    Args:
        work_dir: where ``{key}_checkpoint.pt`` goes every ``checkpoint_every`` steps (``None``: no checkpoints).
        adapter_name: overrides the objective's adapter name.
    Raises:
        SaceError: from the adapter config, or a duplicate adapter name.
    """

    def __init__(self, model, objective: Objective, work_dir: str | os.PathLike | None = None,
                 adapter_name: str | None = None):
        self.model, self.objective = model, objective
        cfg = getattr(objective, "cfg", None)
        if is_dataclass(cfg):
            check_train_config(cfg)   # lr NaN, checkpoint_every 0: one line (the gate: attach_adapter checks it)
        self.work_dir = Path(work_dir) if work_dir else None
        self.settings = objective.optim()
        for p in model.parameters():
            p.requires_grad_(False)
        ad_cfg, ad_seed = objective.adapter_config(adapter_name)
        self.adapter = attach_adapter(model, ad_cfg, seed=ad_seed)
        self.params = self.adapter.parameters()
        for p in self.params:
            p.requires_grad_(True)
        s = self.settings
        self.opt = torch.optim.AdamW(self.params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay)
        self.gen = torch.Generator().manual_seed(s.seed)
        self.step = 0
        self.log: list[dict] = []
        objective.prepare(self)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def checkpoint_path(self) -> Path | None:
        return self.work_dir / f"{self.objective.key}_checkpoint.pt" if self.work_dir else None

    def save_checkpoint(self) -> None:
        """Write the adapter, optimiser, generator, step and log atomically; never a non-finite state."""
        p = self.checkpoint_path()
        if p is None:
            return
        bad = [k for k, v in self.adapter.state_dict().items() if not torch.isfinite(v).all()]
        if bad:
            raise SaceError(f"adapter parameters became non-finite at step {self.step} ({', '.join(bad[:3])}); "
                            f"not overwriting the last good checkpoint {p} (lower --lr)")
        state = {"adapter": self.adapter.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "gen": self.gen.get_state(), "log": self.log, "objective": self.objective.state_dict()}
        # in memory, then temp file + fsync + rename: a full disk reports "disk full" and keeps the last one
        write_checkpoint(p, state, **self._provenance())

    def _provenance(self) -> dict:
        """What a checkpoint must match to be resumed: the concept, the objective's config (with the method)
        and the base weights."""
        obj = self.objective
        concept = getattr(obj, "concept", None)
        cfg = getattr(obj, "cfg", None)
        config = {"method": obj.key, **(jsonable(asdict(cfg)) if is_dataclass(cfg) else {})}
        return {"concept": concept.to_dict() if concept is not None else {}, "config": config,
                "base_hash": base_model_hash(self.model)}

    def resume(self) -> bool:
        """Load the last checkpoint in ``work_dir`` (returns False when there is none).

        Raises:
            SaceError: the checkpoint was made for another concept, with other settings (anything but
                ``steps`` / ``checkpoint_every``), on other base weights, or records neither.
        """
        p = self.checkpoint_path()
        if p is None or not p.exists():
            return False
        st = read_checkpoint(p, **self._provenance())
        sd = st["adapter"]
        with torch.no_grad():
            for name, br in self.adapter.modules.items():
                for pn, prm in br.named_parameters():
                    prm.copy_(sd[f"{name}.{pn}"])
        self.opt.load_state_dict(st["opt"])
        self.gen.set_state(st["gen"])
        self.step = int(st["step"])
        self.log = list(st["log"])
        if st.get("objective"):
            self.objective.load_state_dict(st["objective"])
        return True

    # -- the loop ------------------------------------------------------------------------------------------
    def _optimise(self, loss: Tensor) -> None:
        title = self.objective.title
        if not torch.isfinite(loss):
            where = f"; last good checkpoint: {self.checkpoint_path()}" if self.checkpoint_path() else ""
            raise SaceError(f"{title} loss became {loss.item()} at step {self.step} (lower --lr or --lambda-h)"
                            + where)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.params, self.settings.grad_clip)
        if not torch.isfinite(gn):
            raise SaceError(f"{title} gradient became non-finite at step {self.step}")
        self.opt.step()

    def train(self, progress: bool = True, callback: Callable[[dict], None] | None = None) -> TrainResult:
        """Run the remaining steps; ``callback(record)`` after each step's log record.

        Raises:
            SaceError: a loss or gradient becomes NaN/inf (training stops; the last good checkpoint is kept).
        """
        s, obj = self.settings, self.objective
        bar = None
        if progress:
            bar = tqdm(total=s.steps, initial=self.step, desc=obj.title, dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            while self.step < s.steps:
                vals: dict[str, Tensor] = {}
                for loss, logged in obj.step(self):
                    self._optimise(loss)
                    vals.update(logged)
                self.step += 1
                rec = {"step": self.step, **{k: round(float(v.detach()), 6) for k, v in vals.items()}}
                self.log.append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{rec[k]:.4f}" for k in obj.progress_keys if k in rec})
                if callback is not None:
                    callback(rec)
                if self.work_dir and (self.step % s.checkpoint_every == 0 or self.step == s.steps):
                    self.save_checkpoint()
        finally:   # the bar ends its line before any error or interrupt note is printed
            if bar is not None:
                bar.close()
        secs = time.perf_counter() - t0
        for p in self.params:
            p.requires_grad_(False)
        n_tok = obj.tokens_per_step(self)
        self.adapter.metadata.update({
            "method": obj.title, **obj.metadata(self), "train_seconds": round(secs, 3), "steps": self.step,
            "tokens_per_step": n_tok, "final_log": self.log[-1] if self.log else {}})
        return TrainResult(obj.title, self.adapter, secs, self.step, n_tok, self.log, obj.metadata(self))

    def tokens_per_step(self) -> int:
        return self.objective.tokens_per_step(self)


def run(model, objective: Objective, out_dir: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = True, adapter_name: str | None = None) -> TrainResult:
    """Train ``objective``; with ``out_dir``, checkpoint there and write the adapter folder at the end (its
    metadata holds ``peak_mb``, the peak memory of preparation and training in MB).

    Raises:
        SaceError: ``resume`` without a checkpoint in ``out_dir``; non-finite training.
    """
    if out_dir is not None:
        output_dir(out_dir)          # before any work: a file, a path under a file, a read-only folder
    if resume and (out_dir is None or not (Path(out_dir) / f"{objective.key}_checkpoint.pt").exists()):
        raise SaceError(f"--resume given but no checkpoint in {out_dir}")   # before the teacher is prepared
    mem = PeakMemory(model.device)   # the teacher's preparation included; stored so the folder is written once
    tr = Trainer(model, objective, work_dir=out_dir, adapter_name=adapter_name)
    if resume and not tr.resume():
        raise SaceError(f"--resume given but no checkpoint in {out_dir}")
    res = tr.train(progress=progress)
    res.adapter.metadata["peak_mb"] = mem.peak_mb()
    if out_dir is not None:
        try:
            res.folder = write_adapter_folder(res, out_dir, model)
        except SaceError as e:   # the final checkpoint is still there: no retraining needed
            raise SaceError(f"{e}; the trained state is kept in {tr.checkpoint_path()}: rerun with --resume to "
                            f"write the adapter without training again") from None
        ck = tr.checkpoint_path()
        if ck is not None and ck.exists():
            ck.unlink()
    return res


def write_adapter_folder(res: TrainResult, folder: str | os.PathLike, model=None, extra: dict | None = None) -> Path:
    """The adapter folder of a training run: ``adapter.safetensors`` + ``adapter.json`` (metadata, plus
    ``extra``) + ``train_log.json``, each written atomically. Returns the folder."""
    folder = save_adapter(res.adapter, folder, model=model, extra=extra)
    write_json(folder / "train_log.json", {"log": res.log, "seconds": res.seconds,
                                           "tokens_per_step": res.tokens_per_step})
    return folder


def safe_name(name: str) -> str:
    """An adapter name from a concept name (letters, digits, ``_`` and ``-``)."""
    s = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_")
    return s or "concept"


def jsonable(d):
    """A config dict with non-finite floats as ``None`` (valid JSON)."""
    if isinstance(d, dict):
        return {k: jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [jsonable(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d
