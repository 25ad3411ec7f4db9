"""The one generation loop: next-scale sampling with KV cache, per-scale conditions, guidance on
logits, temperature, top-k/top-p, prefix forcing and per-scale hooks.

Semantics follow Infinity's ``autoregressive_infer_cfg`` (``shared/docs/reference-models.md`` §1.8):
per scale, raw head logits are divided by the temperature tau, mixed as ``w*cond + (1-w)*uncond``,
filtered by top-k/top-p, and **one** ``torch.multinomial`` call draws all tokens of the scale (for bit
tokens from a ``(rows*tokens*bits, 2)`` probability matrix; the model's token kind owns this math), so
a fixed seed reproduces the reference bit for bit.
With a *list* of generators (one per row) each row draws from its own stream instead, which makes a
row's result independent of what else is in the batch (used by ISSA and sharded evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import SaceError
from .models.base import Condition, ScaleLogits, Schedule, TokenPyramid, per_scale_values
from .models.tokens import filter_top_k_top_p
from .validation import sampling as check_sampling

__all__ = ["SamplingSettings", "SampleResult", "SampleHooks", "sample", "make_generators", "filter_top_k_top_p"]


@dataclass
class SamplingSettings:
    """Guidance weight w, temperature tau, top-k and top-p of one generation; ``None`` means the model's
    default (``model.sampling_defaults``). ``guidance`` and ``temperature`` may be per-scale lists.

    Resolved once, by :meth:`resolve`, for the sampling loop and every method that mirrors deployment
    sampling (SACE's losses, the baselines' teachers, ISSA's logit view).
    """

    guidance: float | Sequence[float] | None = None
    temperature: float | Sequence[float] | None = None
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        check_sampling(self.guidance, self.temperature, self.top_k, self.top_p)   # NaN, tau <= 0, top-p > 1

    def resolve(self, model) -> SamplingSettings:
        """Every field filled from ``model.sampling_defaults`` where ``None``.

        Raises:
            SaceError: a temperature <= 0, top-k < 0 or top-p outside [0, 1].
        """
        d = model.sampling_defaults
        out = SamplingSettings(*(d[k] if v is None else v for k, v in (
            ("guidance", self.guidance), ("temperature", self.temperature), ("top_k", self.top_k),
            ("top_p", self.top_p))))
        taus = [out.temperature] if isinstance(out.temperature, (int, float)) else list(out.temperature)
        if any(not float(t) > 0 for t in taus):
            raise SaceError(f"temperatures must be > 0, got {out.temperature}")
        if int(out.top_k) < 0 or not 0 <= float(out.top_p) <= 1:
            raise SaceError(f"top-k must be >= 0 and top-p in [0, 1], got {out.top_k}, {out.top_p}")
        return out

    def resolved(self, model) -> dict:
        """:meth:`resolve` as the dict written into reports and passed as ``sample(**settings)``."""
        r = self.resolve(model)
        return {"guidance": r.guidance, "temperature": r.temperature, "top_k": r.top_k, "top_p": r.top_p}


@dataclass
class SampleResult:
    """Output of :func:`sample`.

    Attributes:
        pyramid: sampled (or forced) bits, K tensors ``(B, h_k, w_k, d)`` int64.
        logits: per-scale guided logits ``(B, h_k*w_k, d, 2)`` the bits were drawn from (after tau and
            guidance, before top-k/top-p), or ``None`` when ``keep_logits=False``.
        cond_logits, uncond_logits: raw head logits of the conditional / unconditional rows.
        images: ``(B, 3, H, W)`` float in [0, 1], or ``None`` when ``decode=False``.
    """

    pyramid: TokenPyramid
    logits: ScaleLogits | None
    cond_logits: ScaleLogits | None
    uncond_logits: ScaleLogits | None
    images: Tensor | None


class SampleHooks:
    """Per-scale callbacks. Subclass and override; return ``None`` to keep the value unchanged."""

    def on_logits(self, k: int, guided: Tensor, cond: Tensor, uncond: Tensor | None) -> Tensor | None:
        """Called with scale k's guided logits ``(B, n_k, d, 2)`` (and the raw parts) before sampling."""
        return None

    def on_tokens(self, k: int, bits: Tensor) -> Tensor | None:
        """Called with scale k's bits ``(B, h_k, w_k, d)`` before they are committed."""
        return None


def _clone_generator(g: torch.Generator) -> torch.Generator:
    new = torch.Generator(device=g.device)
    new.set_state(g.get_state())
    return new


def make_generators(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One seeded ``torch.Generator`` per row."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _conditions(cond, k: int) -> list[Condition]:
    if isinstance(cond, Condition):
        return [cond] * k
    if callable(cond):
        return [cond(i) for i in range(k)]
    conds = list(cond)
    if len(conds) < k:
        raise SaceError(f"{len(conds)} per-scale conditions for {k} scales")
    return conds[:k]


@torch.no_grad()
def sample(
    model,
    cond: Condition | Sequence[Condition] | Callable[[int], Condition],
    *,
    uncond: Condition | Sequence[Condition] | None = None,
    schedule: Schedule | None = None,
    guidance: float | Sequence[float] | None = None,
    temperature: float | Sequence[float] | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    prefix: TokenPyramid | None = None,
    hooks: SampleHooks | None = None,
    decode: bool = True,
    keep_logits: bool = True,
    progress: bool = False,
    fork: dict[int, tuple[Tensor, Sequence[Condition], Sequence[Condition] | None]] | None = None,
) -> SampleResult:
    """Generate with a scale-wise model (KV-cached, one pass over the scales).

    Args:
        model: a scale-wise model (e.g. :class:`~sace.models.infinity.InfinityModel`).
        cond: a :class:`Condition` ``(B rows)`` for every scale, a list with one per scale, or a callable
            ``k -> Condition``. The SOS (scale 0) comes from the scale-0 condition.
        uncond: the guidance's unconditional side (default: the learned null condition of each scale's
            condition; pass an encoded negative prompt to use it instead).
        guidance: w (or one per scale); 1 disables guidance. ``None`` fields (here and below) are resolved
            once by :class:`SamplingSettings` from ``model.sampling_defaults``.
        temperature: tau > 0 (or one per scale). top_k, top_p: filters (0 disables).
        generator: a ``torch.Generator`` (reference RNG use) or a list of B generators (per-row streams).
        prefix: force the first ``prefix.num_scales`` scales to these bits (RNG is still consumed, as the
            reference's ``gt_leak``).
        hooks: :class:`SampleHooks` to read or replace logits and tokens per scale.
        decode: decode the final codes to images.
        fork: ``{scale s: (index, conds, unconds)}``: before scale ``s`` the rows are re-indexed
            (``new row i = old row index[i]``, sharing the KV cache of the common prefix) and continue with
            the per-scale conditions ``conds`` (all K of them, with the new batch size; ``unconds`` likewise or
            ``None`` for the null condition). Per-row generators are cloned with their state, so a forked row
            continues its parent's RNG stream. The returned pyramid and logits are re-indexed to the final
            rows. Used by ISSA to run all prompt-switch points of a pair in one pass.
    Returns:
        :class:`SampleResult`.
    Raises:
        SaceError: inconsistent batch sizes, bad guidance/temperature, prefix shape mismatch.
    """
    check_sampling(guidance, temperature, top_k, top_p)   # NaN guidance, top-p > 1, ... as one line
    sch = schedule or model.schedule
    k_all = sch.num_scales
    s = SamplingSettings(guidance, temperature, top_k, top_p).resolve(model)
    # a family may say what one guidance number means per scale (VAR: a ramp from 1 at scale 0)
    ws = (model.guidance_weights(s.guidance, k_all) if hasattr(model, "guidance_weights")
          else per_scale_values(s.guidance, k_all, "guidance"))
    taus = per_scale_values(s.temperature, k_all, "temperature")
    top_k, top_p = int(s.top_k), float(s.top_p)
    conds = _conditions(cond, k_all)
    b = conds[0].batch_size
    if any(c.batch_size != b for c in conds):
        raise SaceError("per-scale conditions must all have the same batch size")
    guided = any(w != 1 for w in ws)
    unconds = None
    if guided:
        if uncond is None:
            nulls: dict[int, Condition] = {}
            unconds = [nulls.setdefault(id(c), model.null_condition(c)) for c in conds]
        else:
            unconds = _conditions(uncond, k_all)
            if any(u.batch_size != b for u in unconds):
                raise SaceError("the unconditional side must have the same batch size as the prompts")
    if prefix is not None and prefix.batch_size != b:
        raise SaceError(f"prefix batch {prefix.batch_size} != prompt batch {b}")
    kind = model.token_kind
    take_overflow = getattr(getattr(model.transformer, "gate", None), "take_overflow", lambda: False)
    take_overflow()                           # forget what earlier (training) passes recorded
    st = model.begin_sampling(conds, unconds, sch)
    bits_out, guided_out, c_out, u_out = [], [], [], []
    rng = range(k_all)
    if progress:
        from tqdm.auto import tqdm
        rng = tqdm(rng, desc="scales", leave=False)
    for k in rng:
        if fork and k in fork:
            idx, fconds, funconds = fork[k]
            idx = torch.as_tensor(idx, dtype=torch.long)
            conds = _conditions(fconds, k_all)
            b = conds[0].batch_size
            if idx.numel() != b or any(c.batch_size != b for c in conds):
                raise SaceError(f"fork at scale {k}: index has {idx.numel()} rows, conditions {b}")
            if guided:
                if funconds is None:
                    nulls = {}
                    unconds = [nulls.setdefault(id(c), model.null_condition(c)) for c in conds]
                else:
                    unconds = _conditions(funconds, k_all)
            model.fork_sampling(st, idx, conds, unconds)
            if isinstance(generator, (list, tuple)):
                generator = [_clone_generator(generator[int(i)]) for i in idx]
            bits_out = [x[idx] for x in bits_out]
            guided_out = [x[idx] for x in guided_out]
            c_out = [x[idx] for x in c_out]
            u_out = [x[idx] for x in u_out]
            if prefix is not None:
                prefix = prefix.index(idx)
        zc, zu = model.step_logits(st, k)
        z = kind.guide(zc, zu if ws[k] != 1 else None, ws[k], taus[k])
        if hooks is not None:
            z2 = hooks.on_logits(k, z, zc, zu)
            if z2 is not None:
                z = z2
        if take_overflow() or not bool(torch.isfinite(z).all()):   # else multinomial fails deep inside torch
            raise SaceError(_non_finite(model, k))
        h, w = sch.grids[k]
        bits = kind.grid(kind.sample(z, top_k, top_p, generator), h, w)
        if prefix is not None and k < prefix.num_scales:
            forced = prefix.bits[k].to(bits.device).long()
            if forced.shape != bits.shape:
                raise SaceError(f"prefix scale {k} has shape {tuple(forced.shape)}, expected {tuple(bits.shape)}")
            bits = forced
        if hooks is not None:
            b2 = hooks.on_tokens(k, bits)
            if b2 is not None:
                bits = b2.long()
        model.commit_tokens(st, k, bits)
        bits_out.append(bits)
        if keep_logits:
            guided_out.append(z)
            c_out.append(zc)
            if zu is not None:
                u_out.append(zu)
    images = model.finish_sampling(st) if decode else None
    return SampleResult(
        TokenPyramid(bits_out),
        ScaleLogits(guided_out, kind) if keep_logits else None,
        ScaleLogits(c_out, kind) if keep_logits else None,
        ScaleLogits(u_out, kind) if keep_logits and u_out else None,
        images,
    )


def _non_finite(model, k: int) -> str:
    """The one-line error for non-finite logits at scale ``k``: blame the adapters when any is attached."""
    adapted = any(".branches." in n for n, _ in model.transformer.named_parameters())
    if adapted:
        return (f"the adapter produces non-finite logits at scale {k} (huge or corrupt adapter weights); retrain it "
                f"or pass another --adapter")
    return (f"the model produces non-finite logits at scale {k} (corrupt weights or an extreme --guidance / "
            f"--temperature); check the checkpoint and the sampling settings")
