"""``sace erase`` end to end: audit the prompt sets, train, check the result, save -- and say so.

0. the concept's judge (:func:`sace.domains.judge_for`), said in one line (``judge: none`` when the model has
   no detector for the concept: then nothing is checked);
1. :func:`~sace.erasure.audit.audit_concept` on the frozen model (bad anchors stop here with an error;
   entangled / retain prompts that draw the concept are dropped);
2. training of the catalogue's method (:mod:`sace.erasure.catalogue`; default SACE);
3. :func:`~sace.erasure.check.post_training_check` against the thresholds (figures with intervals; PASS / FAIL /
   not decided, :mod:`sace.evaluation.decision`); with ``until_pass`` training continues in chunks of
   ``chunk`` steps until the check says PASS (by the same rule) or ``max_steps`` is reached;
4. the adapter folder, with ``audit`` and ``check`` in ``adapter.json``'s metadata.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .. import domains
from ..concepts.judge import NoDetector, judge_line
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from . import catalogue
from .audit import AuditConfig, AuditResult, audit_concept, unchecked
from .check import CheckResult, CheckThresholds, post_training_check
from .cost import PeakMemory
from .gate import auto_gate
from .trainer import write_adapter_folder


@dataclass
class EraseOptions:
    """What ``sace erase`` does around training."""

    audit: bool = True
    audit_config: AuditConfig = field(default_factory=AuditConfig)
    check_images: int | str = "auto"     # "auto": the sequential design (check.AUTO_DESIGN); N: one look at N
                                         # images per set; 0: no post-training check
    thresholds: CheckThresholds = field(default_factory=CheckThresholds)
    until_pass: bool = False
    max_steps: int = 0                   # step budget with until_pass (0: 3 x the configured steps)
    chunk: int = 0                       # steps added per round (0: half the configured steps)
    detector: str | Callable = "auto"
    gate_tol: float = 0.1                # --gate auto: residual concept rate B(k+1) the gate must reach
    gate_seeds: int = 8
    gate_pairs: int = 3


def check_n(check_images: int | str) -> int | None:
    """``--check-images``: ``"auto"`` -> None (the sequential design), an integer (or its text) -> that fixed
    ``n``. Raises SaceError for anything else or a negative number."""
    if isinstance(check_images, str) and check_images.strip().lower() == "auto":
        return None
    try:
        n = int(check_images)
    except (TypeError, ValueError):
        raise SaceError(f"--check-images must be 'auto' or a number of images >= 0, got {check_images!r}") from None
    if n < 0:
        raise SaceError(f"--check-images must be 'auto' or a number of images >= 0, got {n}")
    return n


@dataclass
class EraseOutcome:
    result: object                       # TrainResult
    audit: AuditResult | None
    check: CheckResult | None
    concept: ConceptSpec
    gate: object | None = None           # AutoGate when --gate auto
    rounds: int = 1
    seconds: float = 0.0


def erase_checked(model, concept: ConceptSpec, config=None, options: EraseOptions | None = None,
                  out_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
                  say: Callable[[str], None] = print, method: str = catalogue.DEFAULT_METHOD) -> EraseOutcome:
    """Judge -> audit -> (``gate="auto"``: choose the gate from ISSA) -> train -> check (-> train more) -> save.
    ``say`` receives the human-readable lines.

    Args:
        config: the method's config (default: :meth:`~sace.erasure.catalogue.MethodEntry.make_config`).
        method: a trained method of :data:`sace.erasure.catalogue.METHODS` (default SACE).
    Raises:
        AuditError: anchors draw the concept. SaceError: a training-free or unknown method; ``--gate auto``
        without a detector; as :func:`sace.erasure.trainer.run`.
    """
    entry = catalogue.get(method, trained=True)
    config = config if config is not None else entry.make_config(model)
    mem = PeakMemory(model.device)
    opt = options or EraseOptions()
    judge = audit = why = None
    auto = getattr(config, "gate", None) == "auto"
    n_check = check_n(opt.check_images)
    checking = n_check is None or n_check > 0     # "auto" (sequential) or N > 0 images; 0 / "0": no check
    if opt.audit or checking or auto:
        try:
            judge = domains.judge_for(model, concept, opt.detector)
            say(judge_line(judge))
        except NoDetector as e:
            why = unchecked(e)
            say(judge_line(e))
    if opt.audit and judge is not None:
        audit, concept = audit_concept(model, concept, config=opt.audit_config, judge=judge, progress=progress)
        for line in audit.lines():
            say(line)
    elif opt.audit:
        audit = AuditResult(concept.name, None, notes=[why])
    gate = None
    if auto:
        if judge is None:
            raise SaceError(f"--gate auto needs a detector for '{concept.name}' (ISSA scores images); give "
                            f"--gate scales:0,..,k instead")
        gate = auto_gate(model, concept, judge, tol=opt.gate_tol, seeds=opt.gate_seeds, pairs=opt.gate_pairs)
        config = replace(config, gate=gate.gate)
        say(gate.line())
    tr = entry.trainer(model, concept, config, work_dir=out_dir)
    if resume and not tr.resume():
        raise SaceError(f"--resume given but no checkpoint in {out_dir}")
    steps0 = tr.settings.steps
    budget = opt.max_steps or 3 * steps0
    chunk = opt.chunk or max(1, steps0 // 2)
    t0 = time.perf_counter()
    res = tr.train(progress=progress)
    train_secs = res.seconds
    check, rounds = None, 1
    if checking and judge is not None:
        while True:
            check = post_training_check(model, concept, tr.adapter.config.name, n=n_check,
                                        thresholds=opt.thresholds, judge=judge, seed=getattr(config, "seed", 0))
            check.steps = tr.step
            say(check.line())
            if check.passed or not opt.until_pass or tr.step >= budget:
                break
            tr.settings.steps = min(budget, tr.step + chunk)
            say(f"training on to step {tr.settings.steps} (budget {budget})")
            for p in tr.params:
                p.requires_grad_(True)
            res = tr.train(progress=progress)
            train_secs += res.seconds
            rounds += 1
        if opt.until_pass and not check.passed:
            say(f"warning: the check still says {check.verdict} after {tr.step} steps (the budget); the adapter is "
                f"saved anyway")
    elif checking:
        check = CheckResult(concept.name, None, n_check or 0, notes=[why])
    res.seconds = train_secs
    meta = res.adapter.metadata
    meta["train_seconds"] = round(train_secs, 3)
    meta["audit"] = audit.to_dict() if audit else None
    meta["check"] = check.to_dict() if check else None
    meta["auto_gate"] = gate.to_dict() if gate else None
    meta["peak_mb"] = mem.peak_mb()     # audit, training and check: the cost of `sace erase`
    if out_dir is not None:
        res.folder = write_adapter_folder(res, out_dir, model)
        ck = tr.checkpoint_path()
        if ck is not None and ck.exists():
            ck.unlink()
    return EraseOutcome(res, audit, check, concept, gate, rounds, time.perf_counter() - t0)
