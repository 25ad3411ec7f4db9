"""``--gate auto``: the adapter's gate chosen from ISSA's late-injection curve.

ISSA's B(k) (``shared/docs/METHOD.md`` §2; :mod:`sace.issa`) is the detector rate when the anchor prompt
conditions scales < k and the concept prompt scales >= k. An adapter confined to scales 0..k can at best
replace the concept prompt's influence on those scales, so what it leaves is about B(k + 1): the concept
injected by the unedited later scales. The auto gate is the smallest prefix ``scales:0..k`` with
B(k + 1) < ``tol`` (all scales when no prefix gets there; B(K) = A(0) is then the floor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..concepts.judge import Judge
from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..issa import issa
from .audit import judge_or_note, spread


@dataclass
class AutoGate:
    """The chosen gate and the ISSA numbers it rests on (``B[k]``, k = 0..K, means over pairs x seeds)."""

    gate: str
    k: int
    tol: float
    B: list[float] = field(default_factory=list)
    A: list[float] = field(default_factory=list)
    pairs: list[list[str]] = field(default_factory=list)
    seeds: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        bs = ", ".join(f"{b:.2f}" for b in self.B)
        return (f"--gate auto: {self.gate} (smallest prefix 0..k with late-injection residual B(k+1) < "
                f"{self.tol:.2f}; ISSA B(k), k = 0..{len(self.B) - 1}: {bs}; {len(self.pairs)} pair(s) x "
                f"{self.seeds} seeds, {self.seconds:.1f} s)")

    def to_dict(self) -> dict:
        return asdict(self)


def choose_gate(B: list[float], tol: float) -> int:
    """Smallest k in 0..K-1 with ``B[k + 1] < tol`` (``B`` has K + 1 entries); K - 1 when there is none."""
    if len(B) < 2:
        raise SaceError("the late-injection curve needs at least two points")
    for k in range(len(B) - 1):
        if B[k + 1] < tol:
            return k
    return len(B) - 2


def auto_gate(model, concept: ConceptSpec, judge: Judge, tol: float = 0.1, seeds: int = 8,
              pairs: int = 3, seed: int = 0) -> AutoGate:
    """Run ISSA on ``pairs`` (target, anchor) pairs of ``concept`` spread over its target list (the canonical
    prompt first) with ``seeds`` seeds each, and choose the gate.

    Args:
        judge: the concept's judge (its flag is ISSA's 0/1 score, so B(k) is a rate).
        tol: the residual concept rate the gate must allow, in (0, 1].
    Raises:
        SaceError: ``tol`` outside (0, 1]; fewer than 1 seed.
    """
    if not 0.0 < tol <= 1.0:
        raise SaceError(f"--gate-tol must be in (0, 1], got {tol}")
    if seeds < 1:
        raise SaceError("--gate auto needs at least one ISSA seed")
    # pairs spread over the target list (over its synonyms), not the first few (one noun, several templates)
    chosen = spread(list(zip(concept.targets, concept.anchors)), pairs)
    res = issa(model, [p for p, _ in chosen], [a for _, a in chosen], [seed + i for i in range(seeds)],
               lambda imgs: judge.flag(imgs).float(), concept=concept.name, logit_view=False,
               keep_images=False)
    B = [float(x) for x in res.curve("B", n_boot=10)["mean"]]
    A = [float(x) for x in res.curve("A", n_boot=10)["mean"]]
    k = choose_gate(B, tol)
    return AutoGate("scales:" + ",".join(str(i) for i in range(k + 1)), k, tol, B, A,
                    [list(p) for p in chosen], seeds, round(res.seconds, 2))


def resolve_auto_gate(model, concept: ConceptSpec, tol: float = 0.1, seeds: int = 8, pairs: int = 3,
                      detector="auto") -> AutoGate:
    """:func:`auto_gate` with the concept's judge (:func:`sace.domains.judge_for`; for ``gate="auto"`` in a SACE
    config).

    Raises:
        SaceError: the model has no detector for the concept (ISSA cannot score it).
    """
    judge, why = judge_or_note(model, concept, detector)
    if judge is None:
        raise SaceError(f"gate 'auto' needs a detector for '{concept.name}' ({why}); give --gate scales:0,..,k")
    return auto_gate(model, concept, judge, tol=tol, seeds=seeds, pairs=pairs)
