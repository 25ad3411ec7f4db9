"""The model-wrapper logic every family shares (:class:`ScaleWiseBase`): per-scale conditions and their
prepared states, the teacher-forced forward with guidance, strict scale-0 isolation (two-stream) and the
KV-cached sampling pass's bookkeeping (:class:`SamplerState`).

A family (:class:`sace.models.infinity.model.InfinityModel`, :class:`sace.models.var.model.VARModel`) subclasses
:class:`ScaleWiseBase` and supplies only what differs, through the hooks documented on the class. The
members together implement :class:`sace.models.base.ScaleWiseModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SaceError
from .base import Condition, ScaleLogits, Schedule, per_scale_values
from .blocks import Segment

__all__ = ["SamplerState", "ScaleWiseBase"]


@dataclass
class SamplerState:
    """Running state of one sampling pass (see :meth:`ScaleWiseBase.begin_sampling`).

    Attributes:
        schedule: the pass's schedule. batch: ``B``, rows per side. guided: unconditional rows run too.
        states: one prepared condition state per scale (``[cond; uncond]`` rows when guided).
        kv_cache: one self-attention ``(k, v)`` (or ``None``) per block.
        fhat: the summed codes so far (the family's VAE latent layout), ``None`` before scale 0.
        next_input: the next scale's input tokens ``(B', n, C_in)`` (``B' = 2B`` when the family stores
            both sides, see :attr:`ScaleWiseBase.next_input_both_sides`).
        extra: ``{"conds", "unconds"}`` of the pass (per scale).
    """

    schedule: Schedule
    batch: int
    guided: bool
    states: list
    kv_cache: list
    fhat: Tensor | None = None
    next_input: Tensor | None = None
    extra: dict = field(default_factory=dict)


class ScaleWiseBase(nn.Module):
    """Shared members of the scale-wise model wrappers.

    A subclass sets ``transformer`` (the family's transformer: ``prepare(x, scale=k)``, ``gate_signature``,
    ``strict_scale0``, ``adapters_off``, ``embed_scale``, ``run_blocks``, ``head_logits``, ``blocks``),
    ``schedule``, ``token_kind``, ``sampling_defaults``, ``method_defaults`` and ``name``, and implements the
    hooks:

    * :meth:`_resolve_schedule` -- the schedule a call runs on;
    * :meth:`_prepare_input` -- what ``transformer.prepare`` takes for condition rows ``[c; u]``;
    * :meth:`_guidance_weights` -- per-scale guidance weights and whether the null rows run;
    * :meth:`_null_conditions` -- the per-scale null conditions when none are given;
    * :meth:`_teacher_forced_pass` -- the transformer's block-causal pass;
    * :meth:`_step_input` and :meth:`_run_cached` -- one KV-cached sampling step.
    """

    #: whether :attr:`SamplerState.next_input` holds the unconditional rows too (``[cond; uncond]``); if not, the
    #: conditional half's next input serves both sides
    next_input_both_sides = True

    @property
    def defaults(self) -> dict:
        """Sampling defaults and method tables in one (read-only) view: ``{"guidance": ..., "sace": {...}}``."""
        return {**self.sampling_defaults, **self.method_defaults}

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # -- hooks ---------------------------------------------------------------------------------------------
    def _resolve_schedule(self, schedule: Schedule | None) -> Schedule:
        """The schedule a call runs on (``None``: the model's default). Raises SaceError for one the model
        cannot run."""
        raise NotImplementedError

    def _prepare_input(self, cond: Condition, uncond: Condition | None) -> Any:
        """What ``transformer.prepare`` takes for the rows of ``cond`` (followed by ``uncond``'s when given)."""
        raise NotImplementedError

    def _guidance_weights(self, guidance, n: int) -> tuple[list[float], bool]:
        """``(w_k for k < n, guided)``: the per-scale guidance weights of a ``guidance`` argument and whether
        the unconditional rows run."""
        raise NotImplementedError

    def _null_conditions(self, conds: list[Condition], n: int) -> list[Condition]:
        """The per-scale unconditional conditions of ``conds`` when the caller gives none (identical condition
        objects must get identical null objects, so that prepared states are shared)."""
        raise NotImplementedError

    def _teacher_forced_pass(self, states: list, tf_inputs: Tensor | None, schedule: Schedule, n: int) -> Tensor:
        """The transformer's block-causal pass over the first ``n`` scales: logits ``(B', L_n, *F, V)``."""
        raise NotImplementedError

    def _step_input(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor, Any]:
        """Scale ``k`` of a sampling pass: its embedded tokens ``(B', n_k, C)``, scale ids ``(n_k,)`` and the
        family's per-step positional data for :meth:`_run_cached` (e.g. RoPE tables, or ``None``)."""
        raise NotImplementedError

    def _run_cached(self, x: Tensor, segments: list[Segment], scale_ids: Tensor, pos: Any, kv_cache: list) -> Tensor:
        """All blocks on ``x`` with the KV cache extended in place (no attention mask: the cache is the past)."""
        raise NotImplementedError

    # -- conditions ----------------------------------------------------------------------------------------
    def continuous_condition(self, cond: Condition) -> Condition:
        """``cond`` in the family's continuous form, the one attacks and learned conditions work in (text
        families: the text states ``(B, L, C)`` and mask as they are; VAR overrides it with class embeddings)."""
        return cond

    def _per_scale(self, cond: Condition | Sequence[Condition], n: int) -> list[Condition]:
        """One condition for all ``n`` scales, or the first ``n`` of a per-scale list. Raises SaceError for too
        few conditions or different batch sizes."""
        if isinstance(cond, Condition):
            return [cond] * n
        conds = list(cond)
        if len(conds) < n:
            raise SaceError(f"{len(conds)} per-scale conditions given for {n} scales")
        b = {c.batch_size for c in conds[:n]}
        if len(b) != 1:
            raise SaceError(f"per-scale conditions have different batch sizes {sorted(b)}")
        return conds[:n]

    def _states(self, conds: list[Condition], unconds: list[Condition] | None) -> list:
        """One prepared condition state per scale ([cond; uncond] rows when guided), shared between scales
        with the same condition objects and gate signature."""
        cache: dict[tuple, Any] = {}
        out = []
        for k, c in enumerate(conds):
            u = unconds[k] if unconds is not None else None
            key = (id(c), id(u), self.transformer.gate_signature(k))
            if key not in cache:
                cache[key] = self.transformer.prepare(self._prepare_input(c, u), scale=k)
            out.append(cache[key])
        return out

    # -- teacher forcing -----------------------------------------------------------------------------------
    def forward_teacher_forced(
        self,
        cond: Condition | Sequence[Condition],
        tf_inputs: Tensor | None,
        schedule: Schedule | None = None,
        scales: int | Sequence[int] | None = None,
        uncond: Condition | Sequence[Condition] | None = None,
        guidance: float | Sequence[float] | None = None,
        temperature: float | Sequence[float] = 1.0,
        return_parts: bool = False,
    ):
        """One block-causal teacher-forced pass.

        Args:
            cond: one condition for all scales, or one per scale (swapping the prompt at scale k leaves
                the logits of scales < k unchanged).
            tf_inputs: ``(B, L-1, C_in)`` inputs of scales 1..K-1 (``None`` when only scale 0 is asked).
            scales: ``None`` (all), an int n (the first n scales) or a list of scale indices; only the
                prefix up to the largest requested scale is computed, so ``scales=[0]`` costs one token
                per prompt.
            uncond, guidance: guided (see the family's :meth:`_guidance_weights`: Infinity with a weight
                ``w != 1``, VAR with any guidance argument, one number ramped) the unconditional rows (default:
                the model's null condition) run in the same batch and the result is
                ``w*z(c)/tau + (1-w)*z(null)/tau`` per scale.
            temperature: tau (per scale or one value) used with guidance.
            return_parts: also return the raw conditional and unconditional ScaleLogits.
        Returns:
            :class:`ScaleLogits` with one entry per requested scale in the family's token layout
            (``token_kind.logits_shape``; raw logits when unguided), or ``(guided, cond_raw, uncond_raw)`` with
            ``return_parts``.
        Raises:
            SaceError: scales out of range, too few per-scale conditions, or a batch mismatch.
        """
        sch = self._resolve_schedule(schedule)
        if scales is None:
            wanted = list(range(sch.num_scales))
        elif isinstance(scales, int):
            wanted = list(range(scales))
        else:
            wanted = sorted({int(s) for s in scales})
        if not wanted or wanted[0] < 0 or wanted[-1] >= sch.num_scales:
            raise SaceError(f"scales {scales} out of range for a {sch.num_scales}-scale schedule")
        n = wanted[-1] + 1
        conds = self._per_scale(cond, n)
        ws, guided = self._guidance_weights(guidance, n)
        taus = per_scale_values(temperature, n, "temperature", 1.0)
        unconds = None
        if guided or uncond is not None:
            unconds = self._per_scale(uncond, n) if uncond is not None else self._null_conditions(conds, n)
        b = conds[0].batch_size
        inp = tf_inputs
        if inp is not None:
            inp = inp.to(self.device)
            if inp.shape[0] != b:
                raise SaceError(f"tf_inputs batch {inp.shape[0]} != condition batch {b}")
            if unconds is not None:
                inp = torch.cat([inp, inp])
        if n > 1 and self.transformer.strict_scale0():
            s0, logits = self._two_stream(conds, unconds, sch, lambda: self._teacher_forced_pass(
                self._states(conds, unconds), inp, sch, n))
            logits = torch.cat([s0, logits[:, 1:]], 1)
        else:
            logits = self._teacher_forced_pass(self._states(conds, unconds), inp, sch, n)
        offs, kind = sch.offsets, self.token_kind
        zc = [logits[:b, offs[k]:offs[k + 1]] for k in wanted]
        zu = [logits[b:, offs[k]:offs[k + 1]] for k in wanted] if unconds is not None else None
        if not guided:
            out = [z / taus[k] if taus[k] != 1 else z for z, k in zip(zc, wanted)]
        else:
            out = [kind.guide(c, u, ws[k], taus[k]) for c, u, k in zip(zc, zu, wanted)]
        out = ScaleLogits(out, kind)
        if return_parts:
            return out, ScaleLogits(zc, kind), (ScaleLogits(zu, kind) if zu is not None else None)
        return out

    def _two_stream(self, conds: list[Condition], unconds: list[Condition] | None, sch: Schedule,
                    plain_pass: Callable[[], Any]):
        """Strict scale-0 isolation (``AdapterConfig.isolation='strict'``), written once for teacher forcing
        and sampling: ``plain_pass()`` runs with every adapter off and produces what later scales see (their
        logits, or the KV cache); the adapted scale-0 token runs alone and gives only the scale-0 logits
        (exact, since scale 0 attends to itself). Returns (adapted scale-0 logits ``(B', 1, *F, V)``,
        ``plain_pass()``'s result); ``B'`` counts the unconditional rows too."""
        with self.transformer.adapters_off():
            out = plain_pass()
        s0 = self._teacher_forced_pass(self._states(conds[:1], unconds[:1] if unconds else None), None, sch, 1)
        return s0, out

    # -- sampling primitives (the loop itself lives in sace.sampling) -----------------------------------------
    def begin_sampling(self, conds: list[Condition], unconds: list[Condition] | None,
                       schedule: Schedule) -> SamplerState:
        """Start a KV-cached sampling pass; ``conds``/``unconds``: one condition per scale."""
        sch = self._resolve_schedule(schedule)
        return SamplerState(sch, conds[0].batch_size, unconds is not None, self._states(conds, unconds),
                            [None] * len(self.transformer.blocks), extra={"conds": conds, "unconds": unconds})

    def step_logits(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor | None]:
        """Run scale ``k`` through the transformer (KV cache extended) and return the raw head logits
        ``(B, n_k, *F, V)`` of the conditional rows and of the unconditional rows (or ``None``)."""
        tr = self.transformer
        offs = st.schedule.offsets
        n = offs[k + 1] - offs[k]
        x, sid, pos = self._step_input(st, k)
        seg = [Segment(0, n, st.states[k])]
        if k == 0 and tr.strict_scale0():
            c, u = st.extra["conds"], st.extra["unconds"]

            def fill_cache():   # the unadapted SOS fills the KV cache that later scales attend to
                plain = self._states(c[:1], u[:1] if u is not None else None)[0]
                self._run_cached(tr.embed_scale(0, None, plain), [Segment(0, n, plain)], sid, pos, st.kv_cache)

            z, _ = self._two_stream(c, u, st.schedule, fill_cache)
        else:
            z = tr.head_logits(self._run_cached(x, seg, sid, pos, st.kv_cache), seg, sid)
        return (z[: st.batch], z[st.batch:]) if st.guided else (z, None)

    def fork_sampling(self, st: SamplerState, index: Tensor, conds: list[Condition],
                      unconds: list[Condition] | None) -> None:
        """Re-index the rows of a running pass (``new row i = old row index[i]``): the KV cache, the summed
        codes and the next input are shared by copy, so rows that agree on a prefix of conditions compute
        it once. ``conds``/``unconds`` are the per-scale conditions of the new rows (used from the next
        scale on)."""
        idx = index.to(self.device)
        rows = torch.cat([idx, idx + st.batch]) if st.guided else idx
        st.kv_cache = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in st.kv_cache]
        if st.fhat is not None:
            st.fhat = st.fhat[idx]
        if st.next_input is not None:
            st.next_input = st.next_input[rows if self.next_input_both_sides else idx]
        st.batch = int(idx.numel())
        st.states = self._states(conds, unconds)
        st.extra.update({"conds": conds, "unconds": unconds})
