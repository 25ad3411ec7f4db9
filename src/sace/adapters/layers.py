"""Scale-gated low-rank adapters (LoRA) for a scale-wise transformer (target layers: the model family's
``module_groups``).

An adapter adds ``delta(x) = (alpha / r) * B(A(x))`` to a linear layer's output, **only for tokens of the
scales it is gated on** (``shared/docs/METHOD.md`` §3: by default scale 0, the SOS token). Later scales run
the original weights but still attend to the edited scale-0 token's keys and values, so the edit reaches
them as context.

How the gate is known: the transformer publishes, in its :class:`~sace.models.gate.GateContext`,
the scale of every token it is projecting (image stream: self-attention, cross-attention queries and outputs,
FFN, head) or the scale whose condition it is preparing (text stream: cross-attention K/V, text pool, text
projection, AdaLN). A text-stream adapter gated on scale 0 therefore changes the text path seen by scale 0
only; the model keeps one prepared condition per gate signature.

peft's LoRA cannot gate per token, so this is our own small module. Several adapters can be stacked on the
same layer (multi-concept composition); each keeps its own gate.

This module holds the layers and their switching; the adapter folder (``adapter.safetensors`` +
``adapter.json``) is written and read by :mod:`sace.adapters.files`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import SaceError
from ..models.gate import GateContext

DEFAULT_MODULES = ("cross_attn_q", "cross_attn_kv", "cross_attn_out", "ffn")


@dataclass
class AdapterConfig:
    """What an adapter adapts and how.

    Attributes:
        name: identifier (prefix of its tensors); several adapters on one model need distinct names.
        modules: parameter groups of the model family (``model.module_groups``; Infinity's:
            :data:`sace.models.infinity.groups.MODULE_GROUPS`).
        rank, alpha: LoRA rank r and scaling alpha (the delta is multiplied by alpha / r).
        gate: ``"scale0"`` (default: only scale 0), ``"shared"`` (every scale) or ``"scales:0,1"``.
        kind: ``"lora"`` or ``"full"`` (a dense, full-rank gated delta: full fine-tuning of the chosen
            modules, still confined to the gated scales).
        isolation: for a ``scale0`` gate, ``"strict"`` (default) runs a two-stream forward: the adapted
            scale-0 token only produces the scale-0 logits, and later scales attend to the *unadapted* scale-0
            keys/values, so the edit reaches them only through the sampled scale-0 bits (with equal scale-0
            bits every later logit is unchanged); ``"context"`` lets later scales attend to the adapted
            scale-0 keys/values (the edit also reaches them as context).
    """

    name: str = "sace"
    modules: list[str] = field(default_factory=lambda: list(DEFAULT_MODULES))
    rank: int = 8
    alpha: float = 8.0
    gate: str = "scale0"
    kind: str = "lora"
    isolation: str = "strict"

    def scales(self) -> frozenset[int] | None:
        """The gated scales, or ``None`` for every scale."""
        if self.gate == "scale0":
            return frozenset({0})
        if self.gate == "shared":
            return None
        m = re.fullmatch(r"scales:([\d,\s]+)", self.gate)
        if not m:
            raise SaceError(f"unknown gate {self.gate!r}; use 'scale0', 'shared', 'scales:0,1' or (sace erase) 'auto'")
        return frozenset(int(s) for s in m.group(1).split(",") if s.strip())

    def validate(self, groups: dict | None = None) -> None:
        """Check the config; ``groups``: the model family's parameter groups (``model.module_groups``;
        ``None`` checks everything else)."""
        bad = [m for m in self.modules if groups is not None and m not in groups]
        if bad:
            raise SaceError(f"unknown adapter modules {bad}; choose from {sorted(groups)}")
        if not self.modules:
            raise SaceError("an adapter needs at least one module group")
        if self.kind not in ("lora", "full"):
            raise SaceError(f"adapter kind must be 'lora' or 'full', got {self.kind!r}")
        if self.kind == "lora" and self.rank < 1:
            raise SaceError(f"LoRA rank must be >= 1, got {self.rank}")
        if self.isolation not in ("strict", "context"):
            raise SaceError(f"adapter isolation must be 'strict' or 'context', got {self.isolation!r}")
        if self.isolation == "strict" and self.gate != "scale0":
            self.isolation = "context"  # strict isolation is defined for scale-0 gates only
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.name):
            raise SaceError(f"adapter name {self.name!r} may only hold letters, digits, '_' and '-'")
        self.scales()


class _Branch(nn.Module):
    """One adapter's delta on one linear layer."""

    def __init__(self, base: nn.Linear, cfg: AdapterConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.scales = cfg.scales()
        self.kind = cfg.kind
        self.strict = cfg.isolation == "strict"
        self.active = True
        fin, fout = base.in_features, base.out_features
        dev = base.weight.device
        if cfg.kind == "lora":
            self.lora_A = nn.Parameter(torch.empty(cfg.rank, fin, device=dev))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)
            self.lora_B = nn.Parameter(torch.zeros(fout, cfg.rank, device=dev))
            self.scaling = cfg.alpha / cfg.rank
        else:
            self.delta = nn.Parameter(torch.zeros(fout, fin, device=dev))
            self.scaling = 1.0

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.lora_A.dtype if self.kind == "lora" else self.delta.dtype)
        if self.kind == "lora":
            return (x @ self.lora_A.t()) @ self.lora_B.t() * self.scaling
        return x @ self.delta.t()


class GatedLinear(nn.Module):
    """A linear layer with any number of scale-gated adapter branches.

    ``y = base(x) + sum_a gate_a(x) * delta_a(x)``, where ``gate_a`` is 1 on tokens of the adapter's scales
    (image stream) or when the condition being prepared belongs to one of them (text stream), else 0.
    """

    def __init__(self, base: nn.Linear, gate: GateContext, text_stream: bool):
        super().__init__()
        self.base = base
        self.gate = gate
        self.text_stream = text_stream
        self.branches = nn.ModuleDict()

    @property
    def weight(self) -> Tensor:  # read access for code that inspects the wrapped layer
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def _mask(self, scales: frozenset[int] | None, x: Tensor) -> Tensor | float:
        if scales is None:
            return 1.0
        g = self.gate
        if self.text_stream or g.text_scale is not None:
            if g.text_scale is None:
                return 0.0
            return 1.0 if g.text_scale in scales else 0.0
        ids = g.token_scale_ids
        if ids is None or x.ndim < 3 or ids.numel() != x.shape[-2]:
            raise SaceError("a scale-gated adapter ran outside the transformer's gated forward "
                            "(no per-token scale ids); call the model through sace's forward/sample functions")
        m = torch.isin(ids, torch.tensor(sorted(scales), device=ids.device))
        return m.to(x.dtype)[:, None]

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if not self.branches:
            return y
        for br in self.branches.values():
            if not br.active:
                continue
            m = self._mask(br.scales, x)
            if isinstance(m, float) and not m:
                continue
            d = br(x)
            if not torch.is_grad_enabled():   # sampling (no_grad): inf/NaN here can vanish in attention, so
                self.gate.note_output(d)      # the sampler asks afterwards; training passes skip the extra work
            y = y + (d if isinstance(m, float) else d * m).to(y.dtype)
        return y


def _targets(model, groups: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """module name -> (group, text_stream) for every linear layer matched by the groups (the patterns come
    from the model family: ``model.module_groups``)."""
    tr = model.transformer
    out: dict[str, tuple[str, bool]] = {}
    for g in groups:
        pats = [re.compile(p + r"$") for p in model.module_groups[g]]
        for name, mod in tr.named_modules():
            name = name.replace(".base", "") if isinstance(mod, nn.Linear) and name.endswith(".base") else name
            if isinstance(mod, (nn.Linear, GatedLinear)) and any(p.match(name) for p in pats):
                out[name] = (g, g in model.text_stream_groups)
    return out


class AdapterSet:
    """The adapters attached to one model, as the model's transformer sees them (``transformer.adapter_set``).

    It answers the three questions the transformer asks while it runs -- which adapters are active on the
    text path of a scale (:meth:`signature`, the key of its prepared-condition cache), whether a strict
    scale-0 isolation is active (:meth:`strict`, the two-stream forward) -- and scopes switching: inside
    :meth:`disabled` or :meth:`only` the chosen branches change, and on exit (also on an exception) every
    branch gets its previous state back (peft's ``with model.disable_adapter():``).
    """

    def __init__(self, transformer: nn.Module):
        self.transformer = transformer
        #: adapter name -> its ``adapter.json`` content, for adapters loaded from a folder (what was erased)
        self.metadata: dict[str, dict] = {}

    def layers(self) -> Iterator[GatedLinear]:
        return (m for m in self.transformer.modules() if isinstance(m, GatedLinear))

    def branches(self) -> Iterator[_Branch]:
        for m in self.layers():
            yield from m.branches.values()

    def names(self) -> list[str]:
        return sorted({n for m in self.layers() for n in m.branches})

    def signature(self, scale: int) -> tuple:
        """Sorted names of the adapters active on the text path of ``scale``."""
        active = {n for m in self.layers() if m.text_stream for n, br in m.branches.items()
                  if br.active and (br.scales is None or scale in br.scales)}
        return tuple(sorted(active))

    def strict(self) -> bool:
        """True when an active adapter asks for strict scale-0 isolation."""
        return any(br.active and br.strict for br in self.branches())

    def set_active(self, enabled: bool, names: Iterable[str] | None = None) -> None:
        """Switch the adapters ``names`` (``None``: all) on or off, until changed again."""
        names = None if names is None else set(names)
        for m in self.layers():
            for n, br in m.branches.items():
                if names is None or n in names:
                    br.active = enabled

    @contextlib.contextmanager
    def only(self, names: Iterable[str] | None):
        """Inside: exactly the adapters ``names`` active (``None`` or empty: none); previous states after."""
        saved = [(br, br.active) for br in self.branches()]
        try:
            self.set_active(False)
            if names:
                self.set_active(True, names)
            yield self
        finally:
            for br, a in saved:
                br.active = a

    def disabled(self):
        """Inside: every adapter off (the original model); previous states after."""
        return self.only(None)


def adapter_set(model) -> AdapterSet:
    """The model's :class:`AdapterSet` (an empty one when nothing is attached)."""
    return model.transformer.adapter_set or AdapterSet(model.transformer)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


@dataclass
class Adapter:
    """An adapter attached to a model (handle returned by :func:`attach_adapter`)."""

    config: AdapterConfig
    modules: dict[str, _Branch]
    metadata: dict = field(default_factory=dict)

    def parameters(self) -> list[nn.Parameter]:
        return [p for br in self.modules.values() for p in br.parameters()]

    def state_dict(self) -> dict[str, Tensor]:
        out = {}
        for name, br in self.modules.items():
            for pn, p in br.named_parameters():
                out[f"{name}.{pn}"] = p.detach().float().cpu()
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def attach_adapter(model, config: AdapterConfig, seed: int | None = None) -> Adapter:
    """Add a (zero-initialised) scale-gated adapter to ``model.transformer``.

    LoRA's A matrices get PEFT's Kaiming-uniform init (B = 0, so the delta starts at exactly zero); with
    ``seed`` that init comes from a private generator, so training runs with the same seed are reproducible.

    The base weights are untouched and frozen; the new branch's parameters are float32 and trainable.
    Attaching a second adapter with another name composes them (their deltas add up).

    Raises:
        SaceError: unknown module groups, a duplicate adapter name, bad rank or gate.
    """
    config.validate(model.module_groups)
    if getattr(model, "schedule", None) is not None:
        check_gate(config.gate, model)
    check_rank(model, config.modules, config.rank, config.kind)
    tr = model.transformer
    existing = adapter_names(model)
    if config.name in existing:
        raise SaceError(f"an adapter named {config.name!r} is already attached; give another name")
    branches: dict[str, _Branch] = {}
    gen = None
    if seed is not None:   # a generator on the weights' device (init_ needs them on the same device)
        gen = torch.Generator(device=next(tr.parameters()).device).manual_seed(int(seed))
    for name, (_, text_stream) in _targets(model, config.modules).items():
        mod = tr.get_submodule(name)
        if not isinstance(mod, GatedLinear):
            mod = GatedLinear(mod, tr.gate, text_stream)
            _set_module(tr, name, mod)
        br = _Branch(mod.base, config, gen)
        mod.branches[config.name] = br
        branches[name] = br
    if not branches:
        raise SaceError(f"no layers matched the adapter modules {config.modules}")
    if tr.adapter_set is None:
        tr.adapter_set = AdapterSet(tr)
    return Adapter(config, branches)


def check_rank(model, modules: Iterable[str], rank: int | None, kind: str = "lora") -> None:
    """A LoRA rank must not exceed the adapted layers' width (min(in, out) of the narrowest one): a larger rank
    adds nothing a full-rank delta would not, and only costs memory (``--rank 1000000`` asked for 23 GB).

    Raises:
        SaceError: naming the largest useful rank; unknown module groups.
    """
    if kind != "lora" or rank is None:
        return
    unknown = [g for g in modules if g not in model.module_groups]
    if unknown:
        raise SaceError(f"unknown adapter modules {unknown}; choose from {sorted(model.module_groups)}")
    tr = model.transformer
    widths = []
    for name in _targets(model, modules):
        mod = tr.get_submodule(name)
        base = mod.base if isinstance(mod, GatedLinear) else mod
        widths.append(min(base.in_features, base.out_features))
    if widths and rank > min(widths):
        raise SaceError(f"--rank {rank} exceeds the width of the adapted layers ({min(widths)}); use --rank "
                        f"{min(widths)} or less (or --full for a full-rank delta)")


def check_gate(gate: str, model) -> None:
    """A gate's scales must exist in the model's schedule (``scales:0,..,k`` with k < K).

    Raises:
        SaceError: an unknown gate, or scales outside the model's.
    """
    sc = AdapterConfig(gate=gate).scales()
    k_all = model.schedule.num_scales
    if sc is not None and (not sc or max(sc) >= k_all or min(sc) < 0):
        raise SaceError(f"gate {gate!r} names scales outside this model's {k_all} scales (0..{k_all - 1}); "
                        f"use e.g. 'scales:0,1' or 'scale0'")


def adapter_names(model) -> list[str]:
    return adapter_set(model).names()


def detach_adapters(model, name: str | None = None) -> None:
    """Remove one adapter (or all) and restore plain linear layers where no branch is left."""
    tr = model.transformer
    for mname, mod in list(tr.named_modules()):
        if isinstance(mod, GatedLinear):
            for n in list(mod.branches):
                if name is None or n == name:
                    del mod.branches[n]
            if not mod.branches:
                _set_module(tr, mname, mod.base)
    if tr.adapter_set is not None:
        for n in [n for n in tr.adapter_set.metadata if name is None or n == name]:
            del tr.adapter_set.metadata[n]
    if not adapter_names(model):
        tr.adapter_set = None


def set_adapters_enabled(model, enabled: bool, names: Iterable[str] | None = None) -> None:
    """Switch adapters off (``enabled=False``: the original model) or on, without detaching.

    ``names``: only these adapters (the others keep their state); ``None``: all of them.
    """
    adapter_set(model).set_active(enabled, names)


def only_adapters(model, names: Iterable[str]) -> None:
    """Activate exactly the adapters ``names`` (all others off), until changed again; for a scoped switch
    use ``with adapter_set(model).only(names):``."""
    set_adapters_enabled(model, False)
    set_adapters_enabled(model, True, names)
