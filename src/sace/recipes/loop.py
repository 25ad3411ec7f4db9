"""The resumable optimisation loop shared by the training recipes (``fashion``, ``fashion-var``).

Per step: set the learning rate, compute the loss (the recipe's ``step_fn``), stop with a SaceError on a
non-finite loss, backward, clip the gradient norm, optimiser step, update an EMA copy; every
``checkpoint_every`` steps (and at the end) the model, EMA, optimiser, data generator, step and log go to one
checkpoint file (written atomically), from which an interrupted run resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import SaceError
from ..io import atomic_path, torch_load_weights


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict | None:
    """A checkpoint written by :func:`save_state` (``weights_only`` load), or ``None`` when absent."""
    return torch_load_weights(path) if path.exists() else None


def progress_bar(total: int, desc: str, initial: int = 0):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


@dataclass
class TrainLoop:
    """One resumable stage.

    Attributes:
        name: stage name (progress bar, error messages). total: steps.
        checkpoint: the checkpoint file. model, opt: what is trained. gen: the stage's data generator.
        lr: step -> learning rate. clip: gradient-norm clip. ema, ema_decay: an EMA copy of ``model``
            (decay ``min(ema_decay, (1 + step) / (10 + step))``) or ``None``.
        log: a dict the step function may append to; checkpointed with the rest when ``keep_log``.
    """

    name: str
    total: int
    checkpoint: Path
    model: nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    lr: Callable[[int], float]
    clip: float
    checkpoint_every: int
    ema: nn.Module | None = None
    ema_decay: float = 0.0
    log: dict = field(default_factory=dict)
    keep_log: bool = False

    def _state(self, step: int) -> dict:
        st = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
              "step": step}
        if self.ema is not None:
            st["ema"] = self.ema.state_dict()
        if self.keep_log:
            st["log"] = self.log
        return st

    def _resume(self) -> int:
        st = load_state(self.checkpoint)
        if st is None:
            return 0
        self.model.load_state_dict(st["model"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["opt"])
        self.gen.set_state(st["gen"])
        if self.keep_log:
            self.log = st["log"]
        return int(st["step"])

    def run(self, step_fn: Callable[[int], tuple[Tensor, dict]], progress: bool = True) -> int:
        """Train to ``total`` steps; ``step_fn(step) -> (loss, progress postfix)``. Returns the steps run now.

        Raises:
            SaceError: a non-finite loss (the message names the last good checkpoint).
        """
        step = start = self._resume()
        bar = progress_bar(self.total, self.name, step) if progress else None
        self.model.train()
        while step < self.total:
            for g in self.opt.param_groups:
                g["lr"] = self.lr(step)
            loss, postfix = step_fn(step)
            if not torch.isfinite(loss):
                raise SaceError(f"{self.name} loss became {loss.item()} at step {step}; the last good checkpoint "
                                f"is {self.checkpoint}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.opt.step()
            if self.ema is not None:
                with torch.no_grad():
                    d = min(self.ema_decay, (1 + step) / (10 + step))
                    for pe, p in zip(self.ema.parameters(), self.model.parameters()):
                        pe.lerp_(p, 1 - d)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(**postfix)
            if step % self.checkpoint_every == 0 or step == self.total:
                save_state(self.checkpoint, self._state(step))
        if bar is not None:
            bar.close()
        return step - start
