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

Artifact: a folder with ``adapter.safetensors`` (``{adapter}.{module}.lora_A`` / ``lora_B`` / ``delta``) and
``adapter.json`` (base model, modules, rank, alpha, gate, training metadata).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import CheckpointError, SaceError
from .io import load_safetensors, save_safetensors, write_json
from .models.gate import GateContext

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
            raise SaceError(f"unknown gate {self.gate!r}; use 'scale0', 'shared' or 'scales:0,1'")
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
            if isinstance(m, float):
                if m:
                    y = y + br(x).to(y.dtype)
            else:
                y = y + (br(x) * m).to(y.dtype)
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


def base_model_hash(model) -> str:
    """A short SHA-256 of the base transformer's weights (adapter branches excluded)."""
    h = hashlib.sha256()
    for k, v in sorted(model.transformer.state_dict().items()):
        if ".branches." in k:
            continue
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(v.shape)).encode())
    return h.hexdigest()[:16]


def save_adapter(adapter: Adapter, folder: str | os.PathLike, model=None, extra: dict | None = None) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``folder`` (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{adapter.config.name}.{k}": v for k, v in adapter.state_dict().items()}
    from . import __version__

    meta = {"format": "sace.adapter.v1", "config": asdict(adapter.config), "sace_version": __version__,
            "num_params": adapter.num_params(), "modules": sorted(adapter.modules), **adapter.metadata,
            **(extra or {})}
    if model is not None:
        meta.setdefault("base_model", getattr(model, "name", "?"))
        meta.setdefault("base_model_hash", base_model_hash(model))
    save_safetensors(folder / "adapter.safetensors", tensors, metadata={"format": "sace.adapter.v1"})
    write_json(folder / "adapter.json", meta)
    return folder


def load_adapter(model, folder: str | os.PathLike, name: str | None = None, strict_base: bool = False) -> Adapter:
    """Attach the adapter saved in ``folder`` to ``model`` (composing with any already attached).

    Args:
        name: rename the adapter (needed to load the same folder twice).
        strict_base: raise when the adapter was trained on another base model (hash differs); otherwise a
            mismatch of the model *name* is an error and a hash mismatch only a warning in the metadata.
    Raises:
        SaceError: folder or files missing, base model mismatch.
        CheckpointError: corrupt file, missing/unexpected tensors, wrong shapes, NaN/inf values.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SaceError(f"adapter folder not found: {folder}")
    try:
        meta = json.loads((folder / "adapter.json").read_text())
    except FileNotFoundError as e:
        raise SaceError(f"{folder} has no adapter.json (not a sace adapter folder)") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{folder / 'adapter.json'} is corrupt ({e})") from e
    if meta.get("format") != "sace.adapter.v1":
        raise CheckpointError(f"{folder / 'adapter.json'} is not a sace adapter (format {meta.get('format')!r})")
    tensors = load_safetensors(folder / "adapter.safetensors")
    cfg = AdapterConfig(**meta["config"])
    saved_name = cfg.name
    if name:
        cfg.name = name
    base = meta.get("base_model")
    if base and getattr(model, "name", None) and base != model.name:
        raise SaceError(f"adapter {folder} was trained on model {base!r}, not {model.name!r}")
    if strict_base and meta.get("base_model_hash") and meta["base_model_hash"] != base_model_hash(model):
        raise SaceError(f"adapter {folder} was trained on different {base!r} weights (hash mismatch)")
    ad = attach_adapter(model, cfg)
    expected = {f"{saved_name}.{k}" for k in ad.state_dict()}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        detach_adapters(model, cfg.name)
        raise CheckpointError(f"{folder / 'adapter.safetensors'} does not match its adapter.json: "
                              f"{len(missing)} missing ({', '.join(missing[:5])}), {len(unexpected)} unexpected "
                              f"({', '.join(unexpected[:5])})")
    with torch.no_grad():
        for mname, br in ad.modules.items():
            for pn, p in br.named_parameters():
                t = tensors[f"{saved_name}.{mname}.{pn}"]
                if t.shape != p.shape:
                    detach_adapters(model, cfg.name)
                    raise CheckpointError(f"adapter tensor {mname}.{pn} has shape {tuple(t.shape)}, the model "
                                          f"needs {tuple(p.shape)} (adapter for another model size?)")
                if not torch.isfinite(t).all():
                    detach_adapters(model, cfg.name)
                    raise CheckpointError(f"adapter tensor {mname}.{pn} holds NaN/inf values")
                p.copy_(t)
    ad.metadata = meta
    return ad


def load_adapters(model, folders: Sequence[str | os.PathLike]) -> list[Adapter]:
    """Attach several adapters (``--adapter DIR`` repeated); names are made unique when they clash."""
    out = []
    for i, f in enumerate(folders):
        try:
            cfg_name = json.loads((Path(f) / "adapter.json").read_text())["config"]["name"]
        except (OSError, KeyError, json.JSONDecodeError):
            cfg_name = None
        name = None
        if cfg_name is not None and cfg_name in adapter_names(model):
            name = f"{cfg_name}_{i}"
        out.append(load_adapter(model, f, name=name))
    return out
