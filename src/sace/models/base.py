"""Model-independent data types shared by every scale-wise (VAR-family) backend.

Shapes follow ``shared/docs/DESIGN.md`` ("The model interface"):

* :class:`Schedule` -- per-scale token grids ``(h_k, w_k)``, offsets, scale ids.
* :class:`Condition` -- a batch of encoded prompts: token states ``(B, T, C_txt)`` plus a mask.
* :class:`TokenPyramid` -- the tokens of every scale (bit tokens: ``(B, h_k, w_k, d)`` in {0, 1}).
* :class:`ScaleLogits` -- per-scale head logits (bit tokens: ``(B, h_k*w_k, d, 2)``); their math lives in
  the family's token kind (:mod:`sace.models.tokens`).
* :class:`ScaleWiseModel` -- the members every family provides and the rest of sace uses.

Guidance convention everywhere: ``z = w * z(c) + (1 - w) * z(null)`` (``w = 1`` means no guidance),
computed on logits already divided by the temperature, exactly as Infinity's sampler does
(``FoundationVision/Infinity: infinity/models/infinity.py, autoregressive_infer_cfg``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SaceError
from .tokens import BitTokens, TokenKind, guide_logits

__all__ = ["Schedule", "Condition", "TokenPyramid", "ScaleLogits", "ScaleWiseModel", "split_defaults",
           "per_scale_values", "guide_logits", "TokenKind", "BitTokens"]


@dataclass(frozen=True)
class Schedule:
    """A scale schedule: the token grid of every scale of one generation.

    Attributes:
        grids: ``((h_0, w_0), ..., (h_{K-1}, w_{K-1}))`` transformer token grids; scale 0 is ``(1, 1)``.
        vae_stride: pixels per VAE latent cell (Infinity: 16; the 8B model: 8).
        patch: spatial patchify factor between the VAE latent grid and the token grid (8B: 2).
        rope_grid: ``(H, W)`` of the grid onto which RoPE positions are normalised ("mode 2": the last
            grid of the aspect ratio's 1M schedule in Infinity). ``None`` means the last grid here.
        name: human-readable tag, e.g. ``"1.000/0.06M"``.
    """

    grids: tuple[tuple[int, int], ...]
    vae_stride: int = 16
    patch: int = 1
    rope_grid: tuple[int, int] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.grids:
            raise SaceError("a scale schedule needs at least one scale")
        grids = tuple((int(h), int(w)) for h, w in self.grids)
        object.__setattr__(self, "grids", grids)
        if any(h < 1 or w < 1 for h, w in grids):
            raise SaceError(f"scale grids must be positive, got {grids}")
        if self.rope_grid is None:
            object.__setattr__(self, "rope_grid", grids[-1])

    @property
    def num_scales(self) -> int:
        """K, the number of scales."""
        return len(self.grids)

    @property
    def sizes(self) -> list[int]:
        """Tokens per scale, ``h_k * w_k``."""
        return [h * w for h, w in self.grids]

    @property
    def offsets(self) -> list[int]:
        """Start offset of every scale in the flattened sequence, plus the total at the end (K+1 ints)."""
        out = [0]
        for n in self.sizes:
            out.append(out[-1] + n)
        return out

    @property
    def num_tokens(self) -> int:
        """L, the total number of tokens (521 for Infinity 1:1 at 0.06M)."""
        return self.offsets[-1]

    @property
    def vae_grids(self) -> tuple[tuple[int, int], ...]:
        """Latent grid of each scale in the VAE (token grid times the patchify factor)."""
        return tuple((h * self.patch, w * self.patch) for h, w in self.grids)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels of the images this schedule produces."""
        h, w = self.vae_grids[-1]
        return h * self.vae_stride, w * self.vae_stride

    def scale_ids(self, device: torch.device | str | None = None) -> Tensor:
        """``(L,)`` int64: the scale index of every token of the flattened sequence."""
        return torch.cat(
            [torch.full((n,), k, dtype=torch.long, device=device) for k, n in enumerate(self.sizes)]
        )

    def truncated(self, num_scales: int) -> Schedule:
        """The first ``num_scales`` scales, keeping RoPE positions of the full schedule."""
        if not 1 <= num_scales <= self.num_scales:
            raise SaceError(f"cannot keep {num_scales} scales of a {self.num_scales}-scale schedule")
        return Schedule(self.grids[:num_scales], self.vae_stride, self.patch, self.rope_grid, self.name)

    def to_dict(self) -> dict:
        return {"grids": [list(g) for g in self.grids], "vae_stride": self.vae_stride, "patch": self.patch,
                "rope_grid": list(self.rope_grid), "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        return cls(tuple(tuple(g) for g in d["grids"]), int(d.get("vae_stride", 16)), int(d.get("patch", 1)),
                   tuple(d["rope_grid"]) if d.get("rope_grid") else None, d.get("name", ""))


@dataclass
class Condition:
    """A batch of encoded prompts.

    Attributes:
        tokens: ``(B, T, C_txt)`` float token states of the text encoder, zero past each prompt's length.
        mask: ``(B, T)`` bool, ``True`` on real tokens. Every row has at least one real token.
        prompts: the prompt strings (for reports), or ``None`` for synthetic conditions.
        is_null: per-row flag, ``True`` when the row is the model's null (unconditional) condition.
    """

    tokens: Tensor
    mask: Tensor
    prompts: tuple[str, ...] | None = None
    is_null: tuple[bool, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise SaceError(f"Condition.tokens must be (B, T, C), got shape {tuple(self.tokens.shape)}")
        if self.mask.shape != self.tokens.shape[:2]:
            raise SaceError(f"Condition.mask {tuple(self.mask.shape)} does not match tokens "
                            f"{tuple(self.tokens.shape[:2])}")
        self.mask = self.mask.bool()
        if self.tokens.shape[0] and bool((self.mask.sum(1) == 0).any()):
            raise SaceError("a condition row has no tokens (empty prompt?); every prompt needs >= 1 token")
        if self.prompts is not None:
            self.prompts = tuple(self.prompts)
        if self.is_null is None:
            self.is_null = (False,) * self.batch_size

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def lengths(self) -> Tensor:
        """``(B,)`` int64 number of real tokens per prompt."""
        return self.mask.sum(1)

    @property
    def channels(self) -> int:
        return int(self.tokens.shape[2])

    def to(self, device=None, dtype=None) -> Condition:
        return Condition(self.tokens.to(device=device, dtype=dtype), self.mask.to(device),
                         self.prompts, self.is_null)

    def index(self, idx: Sequence[int] | Tensor | slice) -> Condition:
        """Rows ``idx`` as a new condition (trimmed to their longest prompt)."""
        if isinstance(idx, slice):
            idx = list(range(self.batch_size))[idx]
        idx = [int(i) for i in (idx.tolist() if isinstance(idx, Tensor) else idx)]
        t = int(self.mask[idx].sum(1).max()) if idx else 0
        prompts = tuple(self.prompts[i] for i in idx) if self.prompts is not None else None
        return Condition(self.tokens[idx, :t], self.mask[idx, :t], prompts, tuple(self.is_null[i] for i in idx))

    def repeat_interleave(self, n: int) -> Condition:
        """Each row repeated ``n`` times in place (row i -> rows i*n .. i*n+n-1)."""
        idx = [i for i in range(self.batch_size) for _ in range(n)]
        return self.index(idx)

    @staticmethod
    def cat(conds: Sequence[Condition]) -> Condition:
        """Concatenate along the batch, padding token states to the longest prompt."""
        if not conds:
            raise SaceError("cannot concatenate zero conditions")
        t = max(c.tokens.shape[1] for c in conds)
        toks = [F.pad(c.tokens, (0, 0, 0, t - c.tokens.shape[1])) for c in conds]
        masks = [F.pad(c.mask, (0, t - c.mask.shape[1]), value=False) for c in conds]
        prompts = None
        if all(c.prompts is not None for c in conds):
            prompts = tuple(p for c in conds for p in c.prompts)
        is_null = tuple(x for c in conds for x in c.is_null)
        return Condition(torch.cat(toks), torch.cat(masks), prompts, is_null)

    def compact(self) -> tuple[Tensor, Tensor]:
        """Infinity's varlen layout: ``kv_compact (sum len_i, C)`` and ``cu_seqlens (B+1,) int32``."""
        lens = self.lengths
        cu = F.pad(torch.cumsum(lens, 0), (1, 0)).to(torch.int32)
        return self.tokens[self.mask], cu

    @staticmethod
    def from_compact(kv_compact: Tensor, cu_seqlens: Tensor, prompts: Sequence[str] | None = None) -> Condition:
        """Inverse of :meth:`compact`: pad a varlen batch back to ``(B, T, C)`` with a mask."""
        cu = [int(x) for x in cu_seqlens.tolist()]
        lens = [b - a for a, b in zip(cu[:-1], cu[1:], strict=False)]
        if any(n <= 0 for n in lens):
            raise SaceError(f"cu_seqlens {cu} has an empty prompt")
        t = max(lens)
        tokens = kv_compact.new_zeros(len(lens), t, kv_compact.shape[1])
        mask = torch.zeros(len(lens), t, dtype=torch.bool, device=kv_compact.device)
        for i, (a, n) in enumerate(zip(cu[:-1], lens, strict=False)):
            tokens[i, :n] = kv_compact[a:a + n]
            mask[i, :n] = True
        return Condition(tokens, mask, tuple(prompts) if prompts is not None else None)


@dataclass
class TokenPyramid:
    """The tokens of every scale, in grid form.

    Attributes:
        bits: list of K int tensors ``(B, h_k, w_k, *F)`` -- for bit tokens ``(B, h_k, w_k, d)`` in {0, 1}
            (bit ``j`` is latent channel ``j``: 1 means code ``+1/sqrt(d)``, 0 means ``-1/sqrt(d)``); for index
            tokens ``(B, h_k, w_k)`` in [0, V). The name is historical; :attr:`tokens` is the same list.
    """

    bits: list[Tensor]

    def __post_init__(self) -> None:
        for k, b in enumerate(self.bits):
            if b.ndim not in (3, 4):
                raise SaceError(f"TokenPyramid scale {k} must be (B, h, w) or (B, h, w, d), got {tuple(b.shape)}")

    @property
    def tokens(self) -> list[Tensor]:
        return self.bits

    @property
    def num_scales(self) -> int:
        return len(self.bits)

    @property
    def batch_size(self) -> int:
        return int(self.bits[0].shape[0])

    @property
    def depth(self) -> int:
        """d, bits per token (bit tokens only)."""
        if self.bits[0].ndim != 4:
            raise SaceError("index tokens have no bit depth")
        return int(self.bits[0].shape[-1])

    def flat(self, k: int) -> Tensor:
        """Scale ``k`` as ``(B, h_k*w_k, *F)`` int64."""
        return self.bits[k].flatten(1, 2).long()

    def index(self, idx) -> TokenPyramid:
        return TokenPyramid([b[idx] for b in self.bits])

    def prefix(self, n: int) -> TokenPyramid:
        return TokenPyramid(self.bits[:n])

    def to(self, device) -> TokenPyramid:
        return TokenPyramid([b.to(device) for b in self.bits])

    @staticmethod
    def cat(pyrs: Sequence[TokenPyramid]) -> TokenPyramid:
        k = {p.num_scales for p in pyrs}
        if len(k) != 1:
            raise SaceError(f"cannot concatenate pyramids with different numbers of scales {sorted(k)}")
        return TokenPyramid([torch.cat([p.bits[i] for p in pyrs]) for i in range(k.pop())])

    def equal(self, other: TokenPyramid, upto: int | None = None) -> bool:
        n = self.num_scales if upto is None else upto
        return all(torch.equal(self.bits[i].long(), other.bits[i].long()) for i in range(n))


@dataclass
class ScaleLogits:
    """Per-scale head logits: a list of K tensors ``(B, h_k*w_k, *F, V)`` laid out as ``kind`` says
    (bit tokens: ``(B, n_k, d, 2)``, ``[..., j, 1]`` the logit of bit j = 1, Infinity's head layout).

    Every per-token measure goes through ``kind`` (:mod:`sace.models.tokens`), never through the layout.
    """

    per_scale: list[Tensor]
    kind: TokenKind | None = None

    def __post_init__(self) -> None:
        if self.kind is None:   # Infinity's layout unless the family says otherwise
            self.kind = BitTokens(int(self.per_scale[0].shape[-2])) if self.per_scale else BitTokens(1)

    @property
    def num_scales(self) -> int:
        return len(self.per_scale)

    def __getitem__(self, k: int) -> Tensor:
        return self.per_scale[k]

    def entropy(self, k: int) -> Tensor:
        """Entropy in nats at scale ``k`` per factor, ``(B, n_k, F)``."""
        return self.kind.entropy(self.per_scale[k])

    def log_prob(self, pyramid: TokenPyramid) -> Tensor:
        """``(B,)`` total log-probability (nats) of the pyramid's tokens under these logits."""
        total = 0.0
        for k, z in enumerate(self.per_scale):
            total = total + self.kind.log_prob(z, pyramid.flat(k)).sum((1, 2))
        return total

    def argmax(self) -> list[Tensor]:
        """Most likely tokens per scale, ``(B, n_k, *F)``."""
        return [self.kind.argmax(z) for z in self.per_scale]

    def detach(self) -> ScaleLogits:
        return ScaleLogits([z.detach() for z in self.per_scale], self.kind)


def per_scale_values(v, n: int, name: str, default: float | None = None) -> list[float]:
    """A setting given once or per scale (``float`` or a sequence) as ``n`` floats; ``None`` -> ``default``.

    Raises:
        SaceError: fewer than ``n`` per-scale values, or ``None`` without a default.
    """
    if v is None:
        if default is None:
            raise SaceError(f"{name} is not set")
        v = default
    if isinstance(v, (int, float)):
        return [float(v)] * n
    vals = [float(x) for x in v]
    if len(vals) < n:
        raise SaceError(f"{name} has {len(vals)} per-scale values for {n} scales")
    return vals[:n]


#: the sampling settings every model has a default for
SAMPLING_KEYS = ("guidance", "temperature", "top_k", "top_p")


def split_defaults(raw: dict | None) -> tuple[dict, dict[str, dict]]:
    """A model folder's ``defaults`` as ``(sampling, per-method)``.

    Layout (``model.json``): ``{"sampling": {"guidance", "temperature", "top_k", "top_p"}, "sace": {...},
    "svare": {...}, "esd": {...}}``; the older flat layout (sampling keys at the top level beside the method
    tables) is read too.
    Raises:
        SaceError: an unknown key or a method table that is not an object.
    """
    raw = dict(raw or {})
    sampling = dict(raw.pop("sampling", None) or {})
    for k in SAMPLING_KEYS:
        if k in raw:
            sampling[k] = raw.pop(k)
    bad = [k for k in sampling if k not in SAMPLING_KEYS]
    bad += [k for k, v in raw.items() if not isinstance(v, dict)]
    if bad:
        raise SaceError(f"unknown model defaults {bad}; use 'sampling' ({', '.join(SAMPLING_KEYS)}) and "
                        "per-method tables such as 'sace'")
    return sampling, {k: dict(v) for k, v in raw.items()}


@runtime_checkable
class ScaleWiseModel(Protocol):
    """What sace uses of a model family (``shared/docs/DESIGN.md`` "The model interface"); Infinity:
    :class:`sace.models.infinity.model.InfinityModel`. ``tests/models/test_conformance.py`` checks a family
    against it. Shapes are given for bit tokens; a family's :attr:`token_kind` defines its own. The members
    every family implements alike live once in :class:`sace.models.common.ScaleWiseBase`.
    """

    #: registry name (reports, adapter metadata) and family tag (``"infinity"``)
    name: str
    family: str
    #: the default scale schedule
    schedule: Schedule
    #: the token layout and its per-token math (entropy, KL, JS, sampling ...)
    token_kind: TokenKind
    #: default sampling settings ``{"guidance", "temperature", "top_k", "top_p"}`` (resolved by
    #: :class:`sace.sampling.SamplingSettings`) and per-method defaults (``{"sace": {...}, "svare": ..., "esd": ...}``)
    sampling_defaults: dict
    method_defaults: dict[str, dict]
    #: adapter parameter groups -> module-name regexes inside :attr:`transformer`, and the text-stream groups
    module_groups: dict[str, tuple[str, ...]]
    text_stream_groups: tuple[str, ...]
    #: the network adapters attach to (an ``nn.Module`` whose linear layers match :attr:`module_groups`)
    transformer: Any

    @property
    def device(self) -> torch.device: ...

    def parameters(self, recurse: bool = True): ...

    # conditioning
    def encode_prompts(self, prompts: Sequence[str]) -> Condition:
        """Prompts -> condition (a class-conditional family: class names -> class embeddings)."""

    def null_condition(self, like: Condition) -> Condition:
        """The unconditional (null) condition with ``like``'s batch (and lengths)."""

    def continuous_condition(self, cond: Condition) -> Condition:
        """``cond`` as continuous states that the model's ``prepare`` accepts in its place with identical results:
        a text family's states ``(B, L, C)`` + mask as they are; a class-conditional family's class embedding rows
        ``(B, 1, C)`` (null rows: the CFG null embedding). What the attacks optimise."""

    # tokenizer
    def tokenize(self, images: Tensor, schedule: Schedule | None = None, bit_flip: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[TokenPyramid, Tensor]:
        """Images ``(B, 3, H, W)`` in [-1, 1] -> (pyramid, teacher-forcing inputs ``(B, L-1, C_in)``)."""

    def tf_inputs(self, pyramid: TokenPyramid, schedule: Schedule | None = None, mode: str = "sampling") -> Tensor:
        """Teacher-forcing inputs ``(B, L-1, C_in)`` rebuilt from any pyramid (as the sampler builds them)."""

    def decode(self, pyramid: TokenPyramid, schedule: Schedule | None = None) -> Tensor:
        """All K scales -> images ``(B, 3, H, W)`` in [0, 1]."""

    # teacher forcing
    def forward_teacher_forced(self, cond: Condition | Sequence[Condition], tf_inputs: Tensor | None,
                               schedule: Schedule | None = None, scales: int | Sequence[int] | None = None,
                               uncond: Condition | Sequence[Condition] | None = None,
                               guidance: float | Sequence[float] | None = None,
                               temperature: float | Sequence[float] = 1.0, return_parts: bool = False):
        """Block-causal pass -> :class:`ScaleLogits` of the requested scales (``scales=[0]``: one token per
        prompt), guided as ``w*z(c)/tau + (1-w)*z(null)/tau``; ``return_parts`` adds the raw cond/uncond parts."""

    # sampling primitives, driven by :func:`sace.sampling.sample`
    def begin_sampling(self, conds: list[Condition], unconds: list[Condition] | None, schedule: Schedule) -> Any:
        """Start a KV-cached pass; returns the family's sampler state."""

    def step_logits(self, state: Any, k: int) -> tuple[Tensor, Tensor | None]:
        """Raw head logits of scale ``k`` for the conditional rows and the unconditional rows (or ``None``)."""

    def commit_tokens(self, state: Any, k: int, tokens: Tensor) -> None:
        """Accept scale ``k``'s grid tokens ``(B, h_k, w_k, *F)`` and build the next input."""

    def fork_sampling(self, state: Any, index: Tensor, conds: list[Condition],
                      unconds: list[Condition] | None) -> None:
        """Re-index the rows of a running pass (``new row i = old row index[i]``)."""

    def finish_sampling(self, state: Any) -> Tensor:
        """Decode the pass: images ``(B, 3, H, W)`` in [0, 1]."""

