"""``VARModel``: a class-conditional VAR (FoundationVision/VAR) behind the scale-wise model interface of
``shared/docs/DESIGN.md`` (:class:`sace.models.base.ScaleWiseModel`).

* Conditions: a prompt is a class label or name (:class:`~sace.models.var.classes.ClassVocabulary`); a
  :class:`Condition` row holds its label as ``tokens[i, 0, 0]`` (float, exact below 2**24) with one real token,
  and the null condition is the null class ``num_classes``. Swapping the condition at scale k (ISSA) swaps
  the class of the AdaLN and head conditions of scales >= k; the SOS comes from the scale-0 condition.
* Tokens: VQ indices, :class:`~sace.models.tokens.IndexTokens` (logits ``(B, n_k, V)``, grids ``(B, h, w)``).
* Guidance: sace's ``w*z(c) + (1-w)*z(null)`` per scale. VAR's ramp ``(1+t_k) z(c) - t_k z(null)`` with
  ``t_k = cfg*k/(K-1)`` is ``w_k = 1 + t_k`` (:func:`guidance_ramp`). A single guidance value ``w`` given to this
  model is the weight of the **last** scale, ramped from 1 (no guidance) at scale 0
  (:meth:`VARModel.guidance_weights`): the reference's ``cfg`` is ``w - 1`` (demo cfg 4 = ``w`` 5, the default).

Reference: ``models/var.py`` (``forward``, ``autoregressive_infer_cfg``) and ``models/quant.py``
(``idxBl_to_var_input``, ``get_next_autoregressive_input``) of FoundationVision/VAR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...errors import SaceError
from ..base import Condition, ScaleLogits, Schedule, TokenPyramid, per_scale_values, split_defaults
from ..infinity.model import SamplerState
from ..text import check_prompts
from ..tokens import IndexTokens
from .classes import ClassVocabulary
from .groups import CONDITION_STREAM, DEFAULT_MODULES, MODULE_GROUPS
from .transformer import ConditionState, Segment, VARTransformer
from .vqvae import VQVAE


def guidance_ramp(cfg: float, num_scales: int) -> list[float]:
    """VAR's guidance schedule as per-scale weights ``w_k = 1 + cfg * k / (K - 1)`` (no guidance at scale 0;
    ``shared/docs/reference-models.md`` §3 "Sampling")."""
    denom = max(num_scales - 1, 1)
    return [1.0 + cfg * k / denom for k in range(num_scales)]


class VARModel(nn.Module):
    """A class-conditional next-scale model with VAR's architecture.

    Args:
        transformer: :class:`VARTransformer`. vae: :class:`VQVAE` with the same ``patch_nums``, vocabulary
            and code width.
        classes: the class vocabulary (``len == transformer.cfg.num_classes``).
        name: registry name. defaults: sampling settings (``guidance`` may be a per-scale list).
    Raises:
        SaceError: transformer and VQVAE disagree.
    """

    family = "var"
    #: prompts are classes: a caption that names no class (a concept's "entangled" context) has no meaning
    class_conditional = True
    module_groups = MODULE_GROUPS
    text_stream_groups = CONDITION_STREAM

    def __init__(self, transformer: VARTransformer, vae: VQVAE, classes: ClassVocabulary, name: str = "var",
                 defaults: dict | None = None):
        super().__init__()
        tc, vc = transformer.cfg, vae.cfg
        if (tc.patch_nums, tc.vocab_size, tc.z_channels) != (vc.patch_nums, vc.vocab_size, vc.z_channels):
            raise SaceError(f"VAR transformer (scales {tc.patch_nums}, V={tc.vocab_size}, Cvae={tc.z_channels}) and "
                            f"VQVAE (scales {vc.patch_nums}, V={vc.vocab_size}, Cvae={vc.z_channels}) do not match")
        if len(classes) != tc.num_classes:
            raise SaceError(f"{len(classes)} class names for a model with {tc.num_classes} classes")
        self.transformer, self.vae, self.classes, self.name = transformer, vae, classes, name
        side = vae.image_size
        self.schedule = Schedule(tuple((p, p) for p in tc.patch_nums), vae_stride=vc.downsample,
                                 name=f"{side}px")
        #: VQ index tokens: logits (B, n, V), grids (B, h, w) int64 in [0, V)
        self.token_kind = IndexTokens(tc.vocab_size)
        sampling, methods = split_defaults(defaults)
        #: default sampling settings; ``guidance`` is the last scale's weight (:meth:`guidance_weights`)
        self.sampling_defaults = {"guidance": 5.0, "temperature": 1.0, "top_k": 900, "top_p": 0.95, **sampling}
        #: per-method defaults: the family's adapter groups, updated by the model's own tables
        self.method_defaults = {m: {"modules": list(DEFAULT_MODULES), **methods.get(m, {})}
                                for m in ("sace", "svare", "esd")}
        self.method_defaults.update({m: t for m, t in methods.items() if m not in self.method_defaults})

    @property
    def defaults(self) -> dict:
        """Sampling defaults and method tables in one (read-only) view."""
        return {**self.sampling_defaults, **self.method_defaults}

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def num_classes(self) -> int:
        return self.transformer.cfg.num_classes

    def guidance_weights(self, guidance, num_scales: int | None = None) -> list[float]:
        """Per-scale guidance weights: a number ``w`` -> VAR's ramp ``1 + (w - 1) k/(K-1)`` (``w`` at the last
        scale, 1 at scale 0); a sequence is taken as given; ``None`` -> the model's default."""
        n = self.schedule.num_scales if num_scales is None else num_scales
        g = self.sampling_defaults["guidance"] if guidance is None else guidance
        if isinstance(g, (int, float)):
            return guidance_ramp(float(g) - 1.0, self.schedule.num_scales)[:n]
        return per_scale_values(g, n, "guidance")

    # -- conditioning ------------------------------------------------------------------------------------
    def condition(self, labels: Sequence[int] | Tensor, prompts: Sequence[str] | None = None) -> Condition:
        """Class labels ``(B,)`` (``num_classes`` = null) -> :class:`Condition` (label in ``tokens[:, 0, 0]``)."""
        lab = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        lab = self.transformer.check_labels(lab).cpu()
        names = tuple(prompts) if prompts is not None else tuple(self.classes.display(int(i)) for i in lab)
        return Condition(lab.float().view(-1, 1, 1), torch.ones(len(lab), 1, dtype=torch.bool), names,
                         tuple(int(i) == self.num_classes for i in lab))

    def encode_prompts(self, prompts: Sequence[str]) -> Condition:
        """Class names or labels -> :class:`Condition`. Raises SaceError for an unknown class."""
        prompts = check_prompts(prompts)
        return self.condition([self.classes.label(p) for p in prompts], prompts)

    def null_condition(self, like: Condition) -> Condition:
        """The null class for every row of ``like``."""
        return self.condition([self.num_classes] * like.batch_size, ("",) * like.batch_size)

    def labels(self, cond: Condition) -> Tensor:
        """``(B,)`` int64 class labels of a condition made by this model. Raises SaceError otherwise."""
        if cond.channels != 1 or cond.tokens.shape[1] != 1:
            raise SaceError(f"a {self.family} condition holds one class label per row (tokens (B, 1, 1)); got "
                            f"{tuple(cond.tokens.shape)} -- encode prompts with this model")
        return cond.tokens[:, 0, 0].round().long()

    def _per_scale(self, cond: Condition | Sequence[Condition], n: int) -> list[Condition]:
        conds = [cond] * n if isinstance(cond, Condition) else list(cond)[:n]
        if len(conds) < n:
            raise SaceError(f"{len(conds)} per-scale conditions given for {n} scales")
        if len({c.batch_size for c in conds}) != 1:
            raise SaceError("per-scale conditions have different batch sizes")
        return conds

    def _states(self, conds: list[Condition], unconds: list[Condition] | None) -> list[ConditionState]:
        """One :class:`ConditionState` per scale ([cond; uncond] rows when guided), shared between scales
        with the same condition objects and gate signature."""
        cache: dict[tuple, ConditionState] = {}
        out = []
        for k, c in enumerate(conds):
            u = unconds[k] if unconds is not None else None
            key = (id(c), id(u), self.transformer.gate_signature(k))
            if key not in cache:
                lab = self.labels(c) if u is None else torch.cat([self.labels(c), self.labels(u)])
                cache[key] = self.transformer.prepare(lab, scale=k)
            out.append(cache[key])
        return out

    # -- tokenizer ---------------------------------------------------------------------------------------
    def _check_schedule(self, schedule: Schedule | None) -> Schedule:
        if schedule is not None and schedule.grids != self.schedule.grids:
            raise SaceError(f"VAR models have one fixed schedule {self.schedule.grids}; got {schedule.grids}")
        return self.schedule

    def tokenize(self, images: Tensor, schedule: Schedule | None = None, bit_flip: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[TokenPyramid, Tensor]:
        """Images ``(B, 3, S, S)`` in [-1, 1] -> (index pyramid ``(B, pn_k, pn_k)``, teacher-forcing inputs
        ``(B, L-1, Cvae)``). ``bit_flip`` must be 0 (bitwise self-correction is Infinity's)."""
        sch = self._check_schedule(schedule)
        if bit_flip:
            raise SaceError("bit_flip (Infinity's bitwise self-correction) does not apply to VQ index tokens")
        idx = self.vae.images_to_indices(images.to(self.device))
        pyr = TokenPyramid([i.view(-1, h, w) for i, (h, w) in zip(idx, sch.grids)])
        return pyr, self.vae.quantize.next_inputs(idx)

    def _flat(self, pyramid: TokenPyramid, n: int) -> list[Tensor]:
        return [pyramid.tokens[k].to(self.device).reshape(pyramid.tokens[k].shape[0], -1).long() for k in range(n)]

    def tf_inputs(self, pyramid: TokenPyramid, schedule: Schedule | None = None, mode: str = "sampling") -> Tensor:
        """Teacher-forcing inputs ``(B, L'-1, Cvae)`` of any index pyramid (training and sampling build them
        alike in VAR, so ``mode`` has no effect)."""
        self._check_schedule(schedule)
        return self.vae.quantize.next_inputs(self._flat(pyramid, min(pyramid.num_scales, self.schedule.num_scales)))

    def decode(self, pyramid: TokenPyramid, schedule: Schedule | None = None) -> Tensor:
        """All K scales of indices -> images ``(B, 3, S, S)`` in [0, 1]."""
        sch = self._check_schedule(schedule)
        if pyramid.num_scales != sch.num_scales:
            raise SaceError(f"pyramid has {pyramid.num_scales} scales, the schedule {sch.num_scales}")
        return (self.vae.indices_to_images(self._flat(pyramid, sch.num_scales)) + 1) / 2

    # -- teacher forcing ---------------------------------------------------------------------------------
    def forward_teacher_forced(self, cond, tf_inputs: Tensor | None, schedule: Schedule | None = None,
                               scales: int | Sequence[int] | None = None, uncond=None, guidance=None,
                               temperature: float | Sequence[float] = 1.0, return_parts: bool = False):
        """One block-causal pass (the reference ``VAR.forward`` without label dropout).

        Args:
            cond: one condition, or one per scale. tf_inputs: ``(B, L-1, Cvae)`` (``None`` for scale 0 only).
            scales: ``None`` (all), n (the first n) or a list; only the prefix up to the largest is computed.
            uncond, guidance: with a guidance argument the null-class rows run in the same batch (even where
                the weight is 1) and the result is ``w*z(c)/tau + (1-w)*z(null)/tau`` per scale; one number is
                ramped (:meth:`guidance_weights`), ``None`` means unguided.
            temperature: tau per scale or one value.
        Returns:
            :class:`ScaleLogits` of ``(B, pn_k**2, V)`` per requested scale, or ``(guided, cond, uncond)``.
        """
        sch = self._check_schedule(schedule)
        wanted = (list(range(sch.num_scales)) if scales is None else list(range(scales)) if isinstance(scales, int)
                  else sorted({int(s) for s in scales}))
        if not wanted or wanted[0] < 0 or wanted[-1] >= sch.num_scales:
            raise SaceError(f"scales {scales} out of range for a {sch.num_scales}-scale schedule")
        n = wanted[-1] + 1
        conds = self._per_scale(cond, n)
        ws = [1.0] * n if guidance is None else self.guidance_weights(guidance, n)
        taus = per_scale_values(temperature, n, "temperature", 1.0)
        # any guidance argument brings the null-class rows, also where the ramp is 1 (scale 0): callers that
        # ask for guided logits get the unconditional parts too (SACE's scale-0 teacher reads them)
        guided = guidance is not None
        unconds = None
        if guided or uncond is not None:
            if uncond is not None:
                unconds = self._per_scale(uncond, n)
            else:
                null = self.null_condition(conds[0])
                unconds = [null] * n
        b = conds[0].batch_size
        inp = None if tf_inputs is None else tf_inputs.to(self.device)
        if inp is not None and inp.shape[0] != b:
            raise SaceError(f"tf_inputs batch {inp.shape[0]} != condition batch {b}")
        if inp is not None and unconds is not None:
            inp = torch.cat([inp, inp])
        tr = self.transformer
        if n > 1 and tr.strict_scale0():
            s0, logits = self._two_stream(conds, unconds, lambda: tr.forward_teacher_forced(
                self._states(conds, unconds), inp, n))
            logits = torch.cat([s0, logits[:, 1:]], 1)
        else:
            logits = tr.forward_teacher_forced(self._states(conds, unconds), inp, n)
        offs, kind = sch.offsets, self.token_kind
        zc = [logits[:b, offs[k]:offs[k + 1]] for k in wanted]
        zu = [logits[b:, offs[k]:offs[k + 1]] for k in wanted] if unconds is not None else None
        if guided:
            out = [kind.guide(c, u, ws[k], taus[k]) for c, u, k in zip(zc, zu, wanted)]
        else:
            out = [z / taus[k] if taus[k] != 1 else z for z, k in zip(zc, wanted)]
        out = ScaleLogits(out, kind)
        if return_parts:
            return out, ScaleLogits(zc, kind), (ScaleLogits(zu, kind) if zu is not None else None)
        return out

    def _two_stream(self, conds: list[Condition], unconds: list[Condition] | None, plain_pass):
        """Strict scale-0 isolation (as :meth:`InfinityModel._two_stream`): ``plain_pass()`` runs with every
        adapter off (what later scales see); the adapted SOS alone gives the scale-0 logits."""
        tr = self.transformer
        with tr.adapters_off():
            out = plain_pass()
        return tr.forward_teacher_forced(self._states(conds[:1], unconds[:1] if unconds else None), None, 1), out

    # -- sampling primitives (the loop is sace.sampling.sample) ------------------------------------------
    def begin_sampling(self, conds: list[Condition], unconds: list[Condition] | None,
                       schedule: Schedule) -> SamplerState:
        """Start a KV-cached pass; ``conds``/``unconds``: one condition per scale."""
        sch = self._check_schedule(schedule)
        return SamplerState(sch, conds[0].batch_size, unconds is not None, self._states(conds, unconds),
                            [None] * len(self.transformer.blocks), extra={"conds": conds, "unconds": unconds})

    def step_logits(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor | None]:
        """Run scale ``k`` (KV cache extended); raw logits ``(B, pn_k**2, V)`` of the cond and uncond rows."""
        tr = self.transformer
        offs = st.schedule.offsets
        n = offs[k + 1] - offs[k]
        sid = tr.lvl_1L[0, offs[k]:offs[k + 1]]
        seg = [Segment(0, n, st.states[k])]
        x = tr.embed_scale(k, st.next_input, st.states[0])
        if k > 0 and st.guided:   # both halves get the cond half's next-scale tokens (reference: repeat(2, 1, 1))
            x = torch.cat([x, x])
        if k == 0 and tr.strict_scale0():
            c, u = st.extra["conds"], st.extra["unconds"]

            def fill_cache():   # the unadapted SOS fills the KV cache that later scales attend to
                plain = self._states(c[:1], u[:1] if u is not None else None)[0]
                tr.run_blocks(tr.embed_scale(0, None, plain), [Segment(0, n, plain)], sid, None, st.kv_cache)

            z, _ = self._two_stream(c, u, fill_cache)
        else:
            z = tr.head_logits(tr.run_blocks(x, seg, sid, None, st.kv_cache), seg, sid)
        return (z[: st.batch], z[st.batch:]) if st.guided else (z, None)

    def commit_tokens(self, st: SamplerState, k: int, tokens: Tensor) -> None:
        """Accept scale ``k``'s indices ``(B, pn_k, pn_k)``: ``fhat += phi_k(up(embed))`` and the next input
        ``area(fhat -> pn_{k+1})`` (``get_next_autoregressive_input``)."""
        idx = tokens.reshape(tokens.shape[0], -1).to(self.device).long()
        self.commit_codes(st, k, self.vae.quantize.embed_grid(idx, st.schedule.grids[k][0]))

    def commit_codes(self, st: SamplerState, k: int, code: Tensor) -> None:
        """Accept scale ``k``'s codes ``(B, Cvae, pn_k, pn_k)`` (embedded indices, or soft codes)."""
        q = self.vae.quantize
        st.fhat, nxt = q.add_scale(k, st.fhat, code)
        if k < st.schedule.num_scales - 1:
            nxt = nxt.view(nxt.shape[0], q.channels, -1).transpose(1, 2)
            st.next_input = nxt

    def fork_sampling(self, st: SamplerState, index: Tensor, conds: list[Condition],
                      unconds: list[Condition] | None) -> None:
        """Re-index the rows of a running pass (``new row i = old row index[i]``), sharing the common prefix."""
        idx = index.to(self.device)
        rows = torch.cat([idx, idx + st.batch]) if st.guided else idx
        st.kv_cache = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in st.kv_cache]
        if st.fhat is not None:
            st.fhat = st.fhat[idx]
        if st.next_input is not None:
            st.next_input = st.next_input[idx]
        st.batch = int(idx.numel())
        st.states = self._states(conds, unconds)
        st.extra.update({"conds": conds, "unconds": unconds})

    def finish_sampling(self, st: SamplerState) -> Tensor:
        """Decode the summed codes: images ``(B, 3, S, S)`` in [0, 1] (``fhat_to_img(...).add_(1).mul_(0.5)``)."""
        return (self.vae.decode_fhat(st.fhat) + 1) / 2
