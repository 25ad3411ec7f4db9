"""``InfinityModel``: the Infinity transformer, its BSQ VAE and a text encoder behind the scale-wise
model interface of ``shared/docs/DESIGN.md`` (encode prompts, tokenize, teacher-forced forward over
any prefix of scales, per-step sampling primitives used by :mod:`sace.sampling`, decode).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...errors import SaceError
from ..base import Condition, Schedule, TokenPyramid, per_scale_values, split_defaults
from ..blocks import Segment
from ..common import SamplerState, ScaleWiseBase
from ..text import TextEncoder, check_prompts
from ..tokens import BitTokens
from .groups import MODULE_GROUPS, TEXT_STREAM
from .transformer import InfinityTransformer
from .vae import BSQVAE, patchify_bits, unpatchify_bits

__all__ = ["INTERP_MODES", "InfinityModel", "SamplerState", "to_uint8_bgr"]

#: how the next scale's input is resized from the summed codes. The reference resizes with trilinear
#: interpolation both when building training inputs (``BitwiseSelfCorrection.flip_requant``) and when
#: sampling (the golden fixtures confirm it); some forks resize with "area" when sampling, kept as an
#: option for checkpoints trained that way.
INTERP_MODES = ("trilinear", "area")


class InfinityModel(ScaleWiseBase):
    """A bitwise next-scale text-to-image model with Infinity's architecture.

    Args:
        transformer: :class:`InfinityTransformer`.
        vae: :class:`BSQVAE` with ``codebook_dim * patch**2 == transformer.cfg.codebook_dim``.
        text_encoder: prompts -> :class:`Condition` (optional: conditions can be given directly).
        schedule: default scale schedule.
        name: registry name (for reports and adapter metadata).
        train_interp, sample_interp: next-input resizing for tokenize/teacher forcing and for sampling.

    Shared wrapper logic (per-scale conditions, teacher forcing with guidance, two-stream scale 0, sampling
    bookkeeping) is :class:`~sace.models.common.ScaleWiseBase`'s; this class supplies its hooks.
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

    # -- properties --------------------------------------------------------------------------------------
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

    def _prepare_input(self, cond: Condition, uncond: Condition | None) -> Condition:
        """The text rows ``[cond; uncond]`` (padded to the longest prompt) as one condition."""
        return cond if uncond is None else Condition.cat([cond, uncond])

    def _null_conditions(self, conds: list[Condition], n: int) -> list[Condition]:
        """The learned null condition of every scale's condition; identical condition objects map to
        identical null objects (state sharing)."""
        unconds = [self.null_condition(c) for c in conds]
        first: dict[int, Condition] = {}
        return [first.setdefault(id(c), u) for c, u in zip(conds, unconds)]

    def _guidance_weights(self, guidance, n: int) -> tuple[list[float], bool]:
        """One weight per scale (one number: every scale; ``None``: 1); guided where any weight is not 1."""
        ws = per_scale_values(guidance, n, "guidance", 1.0)
        return ws, any(w != 1 for w in ws)

    def _resolve_schedule(self, schedule: Schedule | None) -> Schedule:
        """Any schedule of the model's VAE and token width (default: the model's)."""
        return schedule or self.schedule

    def _teacher_forced_pass(self, states, tf_inputs: Tensor | None, schedule: Schedule, n: int) -> Tensor:
        """:meth:`InfinityTransformer.forward_teacher_forced`: bit logits ``(B', L_n, d, 2)`` float32."""
        return self.transformer.forward_teacher_forced(states, tf_inputs, schedule, n)

    def _step_input(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Scale ``k``'s embedded input ``(B', n_k, C)``, its scale ids and RoPE tables ``(n_k, c/2)``."""
        tr = self.transformer
        offs = st.schedule.offsets
        x = tr.embed_scale(k, st.next_input, st.states[0])
        sid = torch.full((offs[k + 1] - offs[k],), k, dtype=torch.long, device=x.device)
        cos, sin = tr.rope(st.schedule, x.device)
        return x, sid, (cos[offs[k]:offs[k + 1]], sin[offs[k]:offs[k + 1]])

    def _run_cached(self, x: Tensor, segments: list[Segment], scale_ids: Tensor, pos: tuple[Tensor, Tensor],
                    kv_cache: list) -> Tensor:
        return self.transformer.run_blocks(x, segments, scale_ids, pos, None, kv_cache)

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

    # -- sampling primitives (the loop itself lives in sace.sampling) -------------------------------------
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

    def finish_sampling(self, st: SamplerState) -> Tensor:
        """Decode the summed codes: images ``(B, 3, H, W)`` float in [0, 1]."""
        return (self.vae.decode(st.fhat) + 1) / 2


def to_uint8_bgr(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W, 3)`` uint8 BGR with truncation, exactly as the reference's
    ``autoregressive_infer_cfg(ret_img=True)``."""
    return images.permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,))
