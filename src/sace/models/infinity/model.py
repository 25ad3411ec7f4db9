"""``InfinityModel``: the Infinity transformer, its BSQ VAE and a text encoder behind the scale-wise
model interface of ``shared/docs/DESIGN.md`` (encode prompts, tokenize, teacher-forced forward over
any prefix of scales, per-step sampling primitives used by :mod:`sace.sampling`, decode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...errors import SaceError
from ..base import Condition, ScaleLogits, Schedule, TokenPyramid, per_scale_values, split_defaults
from ..text import TextEncoder, check_prompts
from ..tokens import BitTokens
from .groups import MODULE_GROUPS, TEXT_STREAM
from .transformer import ConditionState, InfinityTransformer, Segment
from .vae import BSQVAE, patchify_bits, unpatchify_bits

#: how the next scale's input is resized from the summed codes. The reference resizes with trilinear
#: interpolation both when building training inputs (``BitwiseSelfCorrection.flip_requant``) and when
#: sampling (the golden fixtures confirm it); some forks resize with "area" when sampling, kept as an
#: option for checkpoints trained that way.
INTERP_MODES = ("trilinear", "area")


@dataclass
class SamplerState:
    """Running state of one sampling pass (see :meth:`InfinityModel.begin_sampling`)."""

    schedule: Schedule
    batch: int
    guided: bool
    states: list[ConditionState]
    kv_cache: list
    fhat: Tensor | None = None
    next_input: Tensor | None = None
    extra: dict = field(default_factory=dict)


class InfinityModel(nn.Module):
    """A bitwise next-scale text-to-image model with Infinity's architecture.

    Args:
        transformer: :class:`InfinityTransformer`.
        vae: :class:`BSQVAE` with ``codebook_dim * patch**2 == transformer.cfg.codebook_dim``.
        text_encoder: prompts -> :class:`Condition` (optional: conditions can be given directly).
        schedule: default scale schedule.
        name: registry name (for reports and adapter metadata).
        train_interp, sample_interp: next-input resizing for tokenize/teacher forcing and for sampling.
    """

    family = "infinity"
    #: adapter parameter groups of this family (module-name regexes) and the groups on the text stream
    module_groups = MODULE_GROUPS
    text_stream_groups = TEXT_STREAM

    def __init__(self, transformer: InfinityTransformer, vae: BSQVAE, text_encoder: TextEncoder | None = None,
                 schedule: Schedule | None = None, name: str = "infinity", train_interp: str = "trilinear",
                 sample_interp: str = "trilinear", defaults: dict | None = None):
        super().__init__()
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.name = name
        if schedule is None:
            raise SaceError("InfinityModel needs a default schedule")
        self.schedule = schedule
        if train_interp not in INTERP_MODES or sample_interp not in INTERP_MODES:
            raise SaceError(f"interpolation modes must be in {INTERP_MODES}")
        self.train_interp, self.sample_interp = train_interp, sample_interp
        d_tok = vae.codebook_dim * schedule.patch**2
        if d_tok != transformer.cfg.codebook_dim:
            raise SaceError(f"VAE gives {d_tok} bits per token (d={vae.codebook_dim}, patch={schedule.patch}) "
                            f"but the transformer predicts {transformer.cfg.codebook_dim}")
        #: bitwise tokens: logits (B, n, d, 2), tokens (B, h, w, d) in {0, 1}
        self.token_kind = BitTokens(transformer.cfg.codebook_dim)
        sampling, methods = split_defaults(defaults)
        #: default sampling settings (guidance, temperature, top-k, top-p) of this model
        self.sampling_defaults = {"guidance": 3.0, "temperature": 0.5, "top_k": 900, "top_p": 0.97, **sampling}
        #: per-method defaults measured on this model (``{"sace": {...}, "svare": {...}, "esd": {...}}``)
        self.method_defaults = methods

    @property
    def defaults(self) -> dict:
        """Sampling defaults and method tables in one (read-only) view: ``{"guidance": ..., "sace": {...}}``."""
        return {**self.sampling_defaults, **self.method_defaults}

    # -- properties --------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def bits_per_token(self) -> int:
        return self.transformer.cfg.codebook_dim

    def set_bf16_cross_attn(self, on: bool) -> None:
        """Emulate the reference's bf16 cast inside cross-attention and the text pool (fp32 models)."""
        self.transformer.bf16_cross_attn = bool(on)

    # -- conditioning ------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> Condition:
        """Prompts -> :class:`Condition` via the model's text encoder. Raises SaceError on empty prompts
        or when the model has no text encoder."""
        prompts = check_prompts(prompts)
        if self.text_encoder is None:
            raise SaceError(f"model {self.name!r} has no text encoder loaded; pass encoded conditions or load "
                            "one (e.g. --text-encoder PATH)")
        return self.text_encoder.encode(prompts)

    def null_condition(self, like: Condition) -> Condition:
        """Infinity's learned null condition, row i = ``cfg_uncond[:len_i]`` of ``like``."""
        return self.transformer.null_tokens(like)

    def _per_scale(self, cond: Condition | Sequence[Condition], n: int) -> list[Condition]:
        if isinstance(cond, Condition):
            return [cond] * n
        conds = list(cond)
        if len(conds) < n:
            raise SaceError(f"{len(conds)} per-scale conditions given for {n} scales")
        b = {c.batch_size for c in conds[:n]}
        if len(b) != 1:
            raise SaceError(f"per-scale conditions have different batch sizes {sorted(b)}")
        return conds[:n]

    def _states(self, conds: list[Condition], unconds: list[Condition] | None) -> list[ConditionState]:
        """Prepare one :class:`ConditionState` per scale ([cond; uncond] rows when guided), sharing
        states between scales with the same condition objects and gate signature."""
        cache: dict[tuple, ConditionState] = {}
        out = []
        for k, c in enumerate(conds):
            u = unconds[k] if unconds is not None else None
            key = (id(c), id(u), self.transformer.gate_signature(k))
            if key not in cache:
                both = c if u is None else Condition.cat([c, u])
                cache[key] = self.transformer.prepare(both, scale=k)
            out.append(cache[key])
        return out

    # -- tokenizer ---------------------------------------------------------------------------------------
    def tokenize(self, images: Tensor, schedule: Schedule | None = None, bit_flip: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[TokenPyramid, Tensor]:
        """Images -> (bit labels, teacher-forcing inputs).

        Args:
            images: ``(B, 3, H, W)`` float in [-1, 1]; H, W must equal ``schedule.image_size``.
            bit_flip: Bitwise Self-Correction strength (0 = clean; Infinity trains with 0.3).
        Returns:
            ``TokenPyramid`` of token-grid bits ``(B, h_k, w_k, d_tok)`` and inputs ``(B, L-1, d_tok)``.
        """
        sch = schedule or self.schedule
        if tuple(images.shape[-2:]) != sch.image_size:
            raise SaceError(f"images are {tuple(images.shape[-2:])}, the schedule expects {sch.image_size}")
        raw = self.vae.encode(images.to(self.device))
        ms = self.vae.multiscale_quantize(raw, sch.vae_grids, flip_strength=bit_flip, generator=generator,
                                          interp=self.train_interp)
        p = sch.patch
        bits = [patchify_bits(b, p) for b in ms.bits]
        inputs = [patchify_bits(x, p).flatten(1, 2) for x in ms.inputs]
        tf = torch.cat(inputs, 1) if inputs else images.new_zeros(images.shape[0], 0, self.bits_per_token)
        return TokenPyramid(bits), tf

    def tf_inputs(self, pyramid: TokenPyramid, schedule: Schedule | None = None, mode: str = "sampling") -> Tensor:
        """Teacher-forcing inputs ``(B, L-1, d_tok)`` rebuilt from any pyramid (e.g. one the model sampled).

        ``mode='sampling'`` resizes as the sampler does (so teacher-forced logits reproduce the sampling
        logits exactly); ``'training'`` as :meth:`tokenize` does.
        """
        sch = schedule or self.schedule
        interp = self.sample_interp if mode == "sampling" else self.train_interp
        p, grids = sch.patch, sch.vae_grids
        fhat, parts = None, []
        for k in range(min(pyramid.num_scales, sch.num_scales - 1)):
            vb = unpatchify_bits(pyramid.bits[k].to(self.device), p)
            fhat = self.vae.accumulate(fhat, vb, grids[-1], last=False)
            nxt = self.vae.next_input(fhat, grids[k + 1], interp)
            parts.append(patchify_bits(nxt, p).flatten(1, 2))
        if not parts:
            return torch.zeros(pyramid.batch_size, 0, self.bits_per_token, device=self.device)
        return torch.cat(parts, 1)

    def decode(self, pyramid: TokenPyramid, schedule: Schedule | None = None) -> Tensor:
        """Token pyramid (all K scales) -> images ``(B, 3, H, W)`` float in [0, 1]."""
        sch = schedule or self.schedule
        if pyramid.num_scales != sch.num_scales:
            raise SaceError(f"pyramid has {pyramid.num_scales} scales, the schedule {sch.num_scales}")
        vbits = [unpatchify_bits(b.to(self.device), sch.patch) for b in pyramid.bits]
        fhat = self.vae.fhat_from_bits(vbits, sch.vae_grids)
        return (self.vae.decode(fhat) + 1) / 2

    # -- teacher forcing ---------------------------------------------------------------------------------
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
            tf_inputs: ``(B, L-1, d_tok)`` inputs of scales 1..K-1 (``None`` when only scale 0 is asked).
            scales: ``None`` (all), an int n (the first n scales) or a list of scale indices; only the
                prefix up to the largest requested scale is computed, so ``scales=[0]`` costs one token
                per prompt.
            uncond, guidance: with a guidance weight ``w != 1`` the unconditional rows (default: the
                learned null condition) run in the same batch and the result is
                ``w*z(c)/tau + (1-w)*z(null)/tau`` per scale.
            temperature: tau (per scale or one value) used with guidance.
            return_parts: also return the raw conditional and unconditional ScaleLogits.
        Returns:
            :class:`ScaleLogits` with one ``(B, h_k*w_k, d, 2)`` entry per requested scale (raw logits
            when unguided), or ``(guided, cond_raw, uncond_raw)`` with ``return_parts``.
        """
        sch = schedule or self.schedule
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
        ws = per_scale_values(guidance, n, "guidance", 1.0)
        taus = per_scale_values(temperature, n, "temperature", 1.0)
        guided = any(w != 1 for w in ws)
        unconds = None
        if guided or uncond is not None:
            unconds = (self._per_scale(uncond, n) if uncond is not None
                       else [self.null_condition(c) for c in conds])
            # identical condition objects must map to identical null objects (state sharing)
            if uncond is None:
                first: dict[int, Condition] = {}
                unconds = [first.setdefault(id(c), u) for c, u in zip(conds, unconds, strict=False)]
        b = conds[0].batch_size
        inp = tf_inputs
        if inp is not None:
            inp = inp.to(self.device)
            if inp.shape[0] != b:
                raise SaceError(f"tf_inputs batch {inp.shape[0]} != condition batch {b}")
            if unconds is not None:
                inp = torch.cat([inp, inp])
        tr = self.transformer
        if n > 1 and tr.strict_scale0():
            s0, logits = self._two_stream(conds, unconds, sch, lambda: tr.forward_teacher_forced(
                self._states(conds, unconds), inp, sch, n))
            logits = torch.cat([s0, logits[:, 1:]], 1)
        else:
            logits = tr.forward_teacher_forced(self._states(conds, unconds), inp, sch, n)
        offs, kind = sch.offsets, self.token_kind
        zc = [logits[:b, offs[k]:offs[k + 1]] for k in wanted]
        zu = [logits[b:, offs[k]:offs[k + 1]] for k in wanted] if unconds is not None else None
        if not guided:
            out = [z / taus[k] if taus[k] != 1 else z for z, k in zip(zc, wanted, strict=False)]
        else:
            out = [kind.guide(c, u, ws[k], taus[k]) for c, u, k in zip(zc, zu, wanted, strict=False)]
        out = ScaleLogits(out, kind)
        if return_parts:
            return out, ScaleLogits(zc, kind), (ScaleLogits(zu, kind) if zu is not None else None)
        return out

    def _two_stream(self, conds: list[Condition], unconds: list[Condition] | None, sch: Schedule, plain_pass):
        """Strict scale-0 isolation (``AdapterConfig.isolation='strict'``), written once for teacher forcing
        and sampling: ``plain_pass()`` runs with every adapter off and produces what later scales see (their
        logits, or the KV cache); the adapted scale-0 token runs alone and gives only the scale-0 logits
        (exact, since scale 0 attends to itself). Returns (adapted scale-0 logits ``(B', 1, d, 2)``,
        ``plain_pass()``'s result); ``B'`` counts the unconditional rows too."""
        tr = self.transformer
        with tr.adapters_off():
            out = plain_pass()
        s0 = tr.forward_teacher_forced(self._states(conds[:1], unconds[:1] if unconds else None), None, sch, 1)
        return s0, out

    # -- sampling primitives (the loop itself lives in sace.sampling) -------------------------------------
    def begin_sampling(self, conds: list[Condition], unconds: list[Condition] | None,
                       schedule: Schedule) -> SamplerState:
        """Start a KV-cached sampling pass; ``conds``/``unconds``: one condition per scale."""
        states = self._states(conds, unconds)
        return SamplerState(schedule, conds[0].batch_size, unconds is not None, states,
                            [None] * len(self.transformer.blocks), extra={"conds": conds, "unconds": unconds})

    def step_logits(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor | None]:
        """Run scale ``k`` through the transformer (KV cache extended) and return the raw head logits
        ``(B, h_k*w_k, d, 2)`` of the conditional rows and of the unconditional rows (or ``None``)."""
        tr = self.transformer
        sch = st.schedule
        offs = sch.offsets
        x = tr.embed_scale(k, st.next_input, st.states[0])
        n = offs[k + 1] - offs[k]
        sid = torch.full((n,), k, dtype=torch.long, device=x.device)
        cos, sin = tr.rope(sch, x.device)
        seg = [Segment(0, n, st.states[k])]
        rope = (cos[offs[k]:offs[k + 1]], sin[offs[k]:offs[k + 1]])
        if k == 0 and tr.strict_scale0():
            c, u = st.extra["conds"], st.extra["unconds"]

            def fill_cache():   # the unadapted SOS fills the KV cache that later scales attend to
                plain = self._states(c[:1], u[:1] if u is not None else None)[0]
                tr.run_blocks(tr.embed_scale(0, None, plain), [Segment(0, n, plain)], sid, rope, None, st.kv_cache)

            z, _ = self._two_stream(c, u, sch, fill_cache)
        else:
            h = tr.run_blocks(x, seg, sid, rope, None, st.kv_cache)
            z = tr.head_logits(h, seg, sid)
        return (z[: st.batch], z[st.batch:]) if st.guided else (z, None)

    def commit_tokens(self, st: SamplerState, k: int, bits: Tensor) -> None:
        """Accept the bits ``(B, h_k, w_k, d_tok)`` of scale ``k``: add their codes to the running sum
        and build the next scale's input."""
        sch = st.schedule
        grids = sch.vae_grids
        last = k == sch.num_scales - 1
        vb = unpatchify_bits(bits, sch.patch)
        st.fhat = self.vae.accumulate(st.fhat, vb, grids[-1], last=last)
        if not last:
            nxt = self.vae.next_input(st.fhat, grids[k + 1], self.sample_interp)
            nxt = patchify_bits(nxt, sch.patch).flatten(1, 2)
            st.next_input = torch.cat([nxt, nxt]) if st.guided else nxt

    def fork_sampling(self, st: SamplerState, index: Tensor, conds: list[Condition],
                      unconds: list[Condition] | None) -> None:
        """Re-index the rows of a running pass (``new row i = old row index[i]``): the KV cache, the summed
        codes and the next input are shared by copy, so rows that agree on a prefix of conditions compute
        it once. ``conds``/``unconds`` are the per-scale conditions of the new rows (used from the next
        scale on)."""
        idx = index.to(self.device)
        b = st.batch
        rows = torch.cat([idx, idx + b]) if st.guided else idx
        st.kv_cache = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in st.kv_cache]
        if st.fhat is not None:
            st.fhat = st.fhat[idx]
        if st.next_input is not None:
            st.next_input = st.next_input[rows]
        st.batch = int(idx.numel())
        st.states = self._states(conds, unconds)
        st.extra.update({"conds": conds, "unconds": unconds})

    def finish_sampling(self, st: SamplerState) -> Tensor:
        """Decode the summed codes: images ``(B, 3, H, W)`` float in [0, 1]."""
        return (self.vae.decode(st.fhat) + 1) / 2


def to_uint8_bgr(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W, 3)`` uint8 BGR with truncation, exactly as the reference's
    ``autoregressive_infer_cfg(ret_img=True)``."""
    return images.permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,))
