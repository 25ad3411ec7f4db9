"""The method catalogue: every erasure method in one table, read by ``sace erase``, ``sace evaluate
--methods``, ``sace attack --methods``, the demo and the benchmarks.

A row says what a method is called (its key and its row label in every table), whether it trains an adapter
and how (a config factory and the :class:`~sace.erasure.trainer.Objective` the one trainer optimises), or how
it changes sampling without training (a negative prompt, per-scale conditions). Adding a method is one module
(its objective) plus one row of :data:`METHODS`.

Rows: ``original`` (the model as it is), ``sace`` (:mod:`.sace`), ``rsace`` (robust SACE, :mod:`.robust`),
the baselines ``svare``, ``esd``,
``negprompt``, ``swap0`` (:mod:`.baselines`, ``shared/docs/METHOD.md`` §4) and the SACE ablations of METHOD.md
§5 (``sace_noent``, ``sace_nopre``, ``sace_shared``, ``sace_scale0``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..concepts.spec import ConceptSpec
from ..errors import SaceError
from ..models.base import Condition
from .baselines import ESDConfig, ESDObjective, SVAREConfig, SVAREObjective, scale0_swap_conditions
from .robust import RobustSACEObjective, default_robust_config
from .sace import SACEConfig, SACEObjective, apply_model_defaults, default_sace_config
from .trainer import Objective, Trainer, TrainResult, run

__all__ = ["MethodEntry", "METHODS", "DEFAULT_METHOD", "get", "select", "keys"]


@dataclass(frozen=True)
class MethodEntry:
    """One erasure method.

    Attributes:
        key: its name on the command line (``--method``, ``--methods``) and in ``adapter.json`` checkpoints.
        label: its row label in every table (``"SACE"``, ``"S-VARE"``, ``"negative prompt"``).
        config: trained methods: ``(model, **overrides) -> config dataclass`` (the model's measured defaults
            from ``model.json``, then the overrides; ``None`` values are ignored; an unknown field raises).
        objective: trained methods: ``(model, concept, config) -> Objective`` for :class:`~.trainer.Trainer`.
        negative_prompt: training-free: ``concept -> prompt`` encoded as the guidance's unconditional side.
        conditions: training-free: ``(model, prompts, concept) -> per-scale conditions`` replacing the prompts'.
        baseline: a method SACE is compared against (its steps follow ``--baseline-steps``).
        ablation: a SACE ablation (``--methods ablations``), not part of ``all``.
        fixed: config fields an ablation fixes (an override that contradicts one is an error).
    """

    key: str
    label: str
    config: Callable[..., Any] | None = None
    objective: Callable[[Any, ConceptSpec, Any], Objective] | None = None
    negative_prompt: Callable[[ConceptSpec], str] | None = None
    conditions: Callable[[Any, list[str], ConceptSpec], list[Condition]] | None = None
    baseline: bool = False
    ablation: bool = False
    fixed: dict = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        """Whether the method trains an adapter."""
        return self.objective is not None

    def make_config(self, model, **overrides):
        """The method's config for ``model`` with ``overrides`` (``None`` values ignored).

        Raises:
            SaceError: a training-free method; an override of a field the method does not have, or one that
                contradicts an ablation's fixed value.
        """
        _must_train(self)
        for k, v in self.fixed.items():
            if overrides.get(k) is not None and overrides[k] != v:
                raise SaceError(f"{self.key} fixes {k} = {v!r}; drop the {k} option or use --method sace")
        return self.config(model, **{k: v for k, v in overrides.items() if k not in self.fixed})

    def trainer(self, model, concept: ConceptSpec, config=None, work_dir: str | os.PathLike | None = None,
                name: str | None = None) -> Trainer:
        """A :class:`~.trainer.Trainer` of this method (the adapter is attached, the teacher prepared).

        Raises:
            SaceError: a training-free method; as :class:`~.trainer.Trainer`.
        """
        _must_train(self)
        cfg = config if config is not None else self.make_config(model)
        return Trainer(model, self.objective(model, concept, cfg), work_dir, name)

    def train(self, model, concept: ConceptSpec, config=None, *, out_dir: str | os.PathLike | None = None,
              resume: bool = False, progress: bool = True, name: str | None = None) -> TrainResult:
        """Train the method's adapter (it stays attached to ``model``); with ``out_dir``, checkpoint there and
        write the adapter folder (:func:`~.trainer.run`). ``name``: the adapter's name (default: the method's).

        Raises:
            SaceError: a training-free method; as :func:`~.trainer.run`.
        """
        _must_train(self)
        cfg = config if config is not None else self.make_config(model)
        return run(model, self.objective(model, concept, cfg), out_dir=out_dir, resume=resume, progress=progress,
                   adapter_name=name)


def _sace_ablation(key: str, label: str, **fixed) -> MethodEntry:
    return MethodEntry(key, label, lambda model, **ov: default_sace_config(model, **fixed, **ov),
                       lambda model, concept, cfg: SACEObjective(model, concept, cfg), ablation=True, fixed=fixed)


METHODS: dict[str, MethodEntry] = {m.key: m for m in (
    MethodEntry("original", "original"),
    MethodEntry("sace", "SACE", default_sace_config, lambda model, concept, cfg: SACEObjective(model, concept, cfg)),
    MethodEntry("rsace", "robust SACE", default_robust_config,
                lambda model, concept, cfg: RobustSACEObjective(model, concept, cfg)),
    MethodEntry("svare", "S-VARE", lambda model, **ov: apply_model_defaults(SVAREConfig(), model, "svare", **ov),
                lambda model, concept, cfg: SVAREObjective(concept, cfg), baseline=True),
    MethodEntry("esd", "ESD (all scales)", lambda model, **ov: apply_model_defaults(ESDConfig(), model, "esd", **ov),
                lambda model, concept, cfg: ESDObjective(concept, cfg), baseline=True),
    MethodEntry("negprompt", "negative prompt", negative_prompt=lambda concept: concept.targets[0], baseline=True),
    MethodEntry("swap0", "scale-0 prompt swap", conditions=scale0_swap_conditions, baseline=True),
    # SACE ablations (METHOD.md §5)
    _sace_ablation("sace_noent", "SACE, lambda_H = 0", lambda_h=0.0),
    _sace_ablation("sace_nopre", "SACE, lambda_pre = 0", lambda_pre=0.0),
    _sace_ablation("sace_shared", "SACE, shared (ungated) adapter, scale-0 loss", gate="shared", mu=0.1),
    # METHOD.md's defaults as they stand, without the model's own SACE defaults
    MethodEntry("sace_scale0", "SACE, scale-0 gate (paper)",
                lambda model, **ov: apply_model_defaults(SACEConfig(), None, "sace", **ov),
                lambda model, concept, cfg: SACEObjective(model, concept, cfg), ablation=True),
)}
"""Method key -> row, in table order."""

DEFAULT_METHOD = "sace"
"""The method ``sace erase`` trains without ``--method``."""


def get(key: str, trained: bool = False) -> MethodEntry:
    """The row of ``key`` (case-insensitive); ``trained``: it must train an adapter.

    Raises:
        SaceError: an unknown key (listing the known ones); a training-free row where one that trains is needed.
    """
    k = key.strip().lower()
    if k not in METHODS:
        raise SaceError(f"unknown method {key!r}; choose from {', '.join(METHODS)}")
    return _must_train(METHODS[k]) if trained else METHODS[k]


def _must_train(row: MethodEntry) -> MethodEntry:
    if not row.trains:
        raise SaceError(f"{row.key} ({row.label}) trains nothing; choose a trained method: "
                        f"{', '.join(keys(trained=True))}")
    return row


def keys(trained: bool | None = None, ablations: bool = True) -> list[str]:
    """Method keys in table order; ``trained``: only the trained (True) or training-free (False) ones."""
    return [k for k, m in METHODS.items()
            if (trained is None or m.trains == trained) and (ablations or not m.ablation)]


def select(spec: str | Sequence[str] | None, default: Sequence[str] = ("original",)) -> list[str]:
    """Method keys of a ``--methods`` value: a comma list of keys, ``all`` (every row but the ablations) and
    ``ablations`` (the SACE ablations); ``default`` when empty. Duplicates are dropped, order kept.

    Raises:
        SaceError: an unknown key (the message lists the keys, ``all`` and ``ablations``).
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out: list[str] = []
    for m in (x.strip().lower() for x in items):
        if m == "all":
            out += keys(ablations=False)
        elif m == "ablations":
            out += [k for k, e in METHODS.items() if e.ablation]
        elif m in METHODS:
            out.append(m)
        elif m:
            raise SaceError(f"unknown method {m!r}; choose from {', '.join(METHODS)}, 'all' or 'ablations'")
    return list(dict.fromkeys(out or default))
