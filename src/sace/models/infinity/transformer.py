"""The Infinity transformer: block-causal bitwise next-scale prediction with cross-attention to text.

Architecture facts: ``shared/docs/reference-models.md`` §1.4-1.5, §1.8 (reference files
``infinity/models/infinity.py`` and ``infinity/models/basic.py`` of FoundationVision/Infinity):

* text: RMSNorm (learned weight) on the encoder's token states; an attention pool with one learned
  query per head gives the condition ``cond`` (= the SOS token); a 2-layer GELU-tanh MLP gives the
  cross-attention memory. The null condition replaces a prompt's tokens by ``cfg_uncond[:len]``.
* scale 0 is one token, ``cond + pos_start``; scale k > 0 is ``word_embed(input_k)``; ``lvl_embed[k]`` is
  added once, before the first block. No absolute positions: 2-D RoPE in every self-attention with
  positions normalised onto ``schedule.rope_grid`` ("mode 2").
* block (pre-norm, shared AdaLN): ``[g1, g2, s1, s2, b1, b2] = ada_gss + shared_ada_lin(cond)``;
  ``x += g1 * SA(LN(x)(1+s1)+b1)``; ``x += CA(LN_affine(x), text)``; ``x += g2 * FFN(LN(x)(1+s2)+b2)``.
* self-attention: QK L2-norm, q times ``exp(min(scale_mul, ln 100))``, RoPE on adjacent pairs, softmax
  scale 1, block-causal mask (a token sees its own scale and all earlier scales).
* cross-attention: no QK-norm, scale ``1/sqrt(head_dim)``; the reference casts q/k/v to bf16 even in an
  fp32 model (flash-attn varlen) -- emulated here when ``bf16_cross_attn=True``.
* head: LN, ``(1+scale)``/``shift`` from ``Linear(SiLU(cond))``, then ``Linear(C, 2d)`` -> logits
  ``(B, L, d, 2)``.

This module adds what the reference lacks and erasure needs: per-scale conditions (each scale may use a
different prompt for AdaLN, cross-attention and the head), scale-gated adapters (see
:class:`GateContext`), and teacher-forced forwards over any prefix of scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SaceError
from ..base import Condition, Schedule
from ..blocks import FFN, AdaLNBeforeHead, AdapterHost, Segment, adaln, extend_kv_cache, per_token, segments_of
from ..gate import GateContext


@dataclass
class InfinityConfig:
    """Hyper-parameters of the Infinity transformer (names follow the reference constructor)."""

    depth: int = 32
    embed_dim: int = 2048
    num_heads: int = 16
    mlp_ratio: float = 4.0
    text_channels: int = 2048
    text_maxlen: int = 512
    codebook_dim: int = 32          # bits per token d (56 for Infinity-8B: 14 bits x 2x2 patchify)
    block_chunks: int = 8           # only affects checkpoint key names (block_chunks.{c}.module.{j})
    norm_eps: float = 1e-6
    num_lvl_embed: int = 15
    cond_drop_rate: float = 0.1     # training-time null-condition probability (classifier-free guidance)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.embed_dim * self.mlp_ratio / 256) * 256)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass
class ConditionState:
    """A condition prepared for one gate signature.

    Attributes:
        cond: ``(B, C)`` pooled text (the SOS token and AdaLN input).
        gss: ``(B, 6, C)`` shared AdaLN output ``shared_ada_lin(cond)``.
        head_ss: ``(B, 2, C)`` head AdaLN (scale, shift).
        memory: ``(B, T, C)`` cross-attention memory; ``mask`` ``(B, T)`` bool.
        kv: per-block cache of cross-attention keys/values ``(B, H, T, c)``.
    """

    cond: Tensor
    gss: Tensor
    head_ss: Tensor
    memory: Tensor
    mask: Tensor
    lengths: list[int]
    signature: tuple = ()
    kv: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)


class SelfAttention(nn.Module):
    def __init__(self, cfg: InfinityConfig):
        super().__init__()
        c = cfg.embed_dim
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.mat_qkv = nn.Linear(c, 3 * c, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(c))
        self.v_bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("zero_k_bias", torch.zeros(c))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, cfg.num_heads, 1, 1), 4.0).log())
        self.max_scale_mul = math.log(100.0)
        self.proj = nn.Linear(c, c)

    def qkv(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = self.mat_qkv(x) + bias
        q, k, v = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scale_mul = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
        q = F.normalize(q, dim=-1, eps=1e-12).mul(scale_mul)
        k = F.normalize(k, dim=-1, eps=1e-12)
        q, k = apply_rope(q, k, rope)
        return q, k, v


class CrossAttention(nn.Module):
    """Cross-attention to text (``for_attn_pool=False``) or the attention pool (``True``: one learned
    query per head, ``mat_q`` of shape ``(1, H, C/H)``)."""

    def __init__(self, embed_dim: int, kv_dim: int, num_heads: int, for_attn_pool: bool = False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.for_attn_pool = for_attn_pool
        if for_attn_pool:
            self.mat_q = nn.Parameter(torch.zeros(1, num_heads, self.head_dim))
            nn.init.trunc_normal_(self.mat_q, std=math.sqrt(1 / embed_dim / 3))
        else:
            self.mat_q = nn.Linear(embed_dim, embed_dim)
        self.mat_kv = nn.Linear(kv_dim, 2 * embed_dim, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, kv_dim)`` -> k, v ``(B, H, T, c)``."""
        b, t, _ = memory.shape
        kv = self.mat_kv(memory) + torch.cat((self.zero_k_bias, self.v_bias))
        k, v = kv.view(b, t, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return k, v

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, bf16: bool) -> Tensor:
        """q ``(B, H, Lq, c)``, k/v ``(B, H, T, c)``, key mask ``(B, T)`` -> ``(B, Lq, C)``."""
        b, h, lq, c = q.shape
        scale = 1.0 / math.sqrt(self.head_dim)
        if bf16:
            # The reference hands bf16 q/k/v to flash-attn (fp32 accumulation, bf16 output) even in an
            # fp32 model. Emulated device-independently: round the inputs to bf16, attend in fp32, round
            # the output to bf16 (matches the golden bf16 logits to ~1e-6 on average).
            def r(t: Tensor) -> Tensor:
                return t.to(torch.bfloat16).to(q.dtype)

            q, k, v = r(q), r(k), r(v)
            if bool(mask.all()):
                out = F.scaled_dot_product_attention(q, k, v, scale=scale)
            else:
                bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None, None, :], scale=scale)
            out = r(out)
        elif bool(mask.all()):
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        else:
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None, None, :], scale=scale)
        return out.transpose(1, 2).reshape(b, lq, h * c)


class CrossAttnBlock(nn.Module):
    def __init__(self, cfg: InfinityConfig):
        super().__init__()
        c = cfg.embed_dim
        self.eps = cfg.norm_eps
        self.sa = SelfAttention(cfg)
        self.ca = CrossAttention(c, c, cfg.num_heads)
        self.ffn = FFN(c, cfg.mlp_hidden)
        self.ca_norm = nn.LayerNorm(c, eps=cfg.norm_eps, elementwise_affine=True)
        self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, c) / c**0.5)


class TextAttentivePool(nn.Module):
    """Attention pool of the text tokens into one vector per prompt (``text_proj_for_sos``)."""

    def __init__(self, text_channels: int, embed_dim: int):
        super().__init__()
        head_dim = 64 if embed_dim > 4096 else 128
        heads = max(1, text_channels // head_dim)
        if embed_dim % heads:
            raise SaceError(f"embed_dim {embed_dim} is not divisible by the {heads} text-pool heads "
                            f"(text_channels {text_channels} / {head_dim})")
        self.ca = CrossAttention(embed_dim, text_channels, heads, for_attn_pool=True)


class FastRMSNorm(nn.Module):
    def __init__(self, c: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x: Tensor) -> Tensor:
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps))) * self.weight


# -- RoPE ---------------------------------------------------------------------------------------------

def rope_table(schedule: Schedule, head_dim: int, base: float = 10000.0,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """cos/sin tables ``(L, head_dim/2)`` for every token of ``schedule`` (2-D RoPE, "mode 2").

    Token (i, j) of scale k with grid (h, w) sits at row ``round(i * H/h)``, column ``round(j * W/w)`` of
    ``schedule.rope_grid = (H, W)``; its angles are ``[row * f, col * f]`` with
    ``f = base^(-2m/(head_dim/2))``, m = 0..head_dim/4-1 (reference: ``precompute_rope2d_freqs_grid``,
    ``rope2d_normalized_by_hw=2``). Computed in float32 in the reference's order of operations.
    """
    half = head_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, dtype=torch.int64, device=device) / half))
    big_h, big_w = schedule.rope_grid
    rows, cols = [], []
    for h, w in schedule.grids:
        r = (torch.arange(h, device=device) * (big_h / h)).reshape(h, 1).expand(h, w)
        c = (torch.arange(w, device=device) * (big_w / w)).reshape(1, w).expand(h, w)
        idx = torch.stack([r, c], -1).round().int().reshape(-1, 2)
        rows.append(idx[:, 0])
        cols.append(idx[:, 1])
    row = torch.cat(rows).to(inv_freq.dtype)
    col = torch.cat(cols).to(inv_freq.dtype)
    ang = torch.cat([row[:, None] * inv_freq[None], col[:, None] * inv_freq[None]], -1)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(q: Tensor, k: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Rotate adjacent pairs ``(x[2i], x[2i+1])`` of q, k ``(B, H, N, c)`` by the table ``(N, c/2)``."""
    cos, sin = rope
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)

    def rot(x: Tensor) -> Tensor:
        x = x.reshape(*x.shape[:-1], -1, 2)
        x0, x1 = x[..., 0], x[..., 1]
        return torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], -1).flatten(-2)

    return rot(q), rot(k)


# -- the transformer ----------------------------------------------------------------------------------

class InfinityTransformer(nn.Module, AdapterHost):
    """Infinity's transformer. Parameters carry the reference names (``blocks.{i}`` here; the official
    ``block_chunks.{c}.module.{j}`` layout is mapped by :mod:`sace.models.infinity.checkpoint`)."""

    def __init__(self, cfg: InfinityConfig):
        super().__init__()
        self.cfg = cfg
        c, ct = cfg.embed_dim, cfg.text_channels
        if c % cfg.num_heads:
            raise SaceError(f"embed_dim {c} is not divisible by num_heads {cfg.num_heads}")
        if cfg.depth % cfg.block_chunks:
            raise SaceError(f"depth {cfg.depth} is not divisible by block_chunks {cfg.block_chunks}")
        g = torch.Generator().manual_seed(0)
        cfg_uncond = torch.empty(cfg.text_maxlen, ct)
        nn.init.trunc_normal_(cfg_uncond, std=1.2, generator=g)
        self.cfg_uncond = nn.Parameter(cfg_uncond / ct**0.5)
        self.text_norm = FastRMSNorm(ct, cfg.norm_eps)
        self.text_proj_for_sos = TextAttentivePool(ct, c)
        self.text_proj_for_ca = nn.Sequential(nn.Linear(ct, c), nn.GELU(approximate="tanh"), nn.Linear(c, c))
        init_std = math.sqrt(1 / c / 3)
        self.pos_start = nn.Parameter(torch.empty(1, 1, c))
        nn.init.trunc_normal_(self.pos_start, std=init_std)
        self.lvl_embed = nn.Embedding(cfg.num_lvl_embed, c)
        nn.init.trunc_normal_(self.lvl_embed.weight, std=init_std)
        self.word_embed = nn.Linear(cfg.codebook_dim, c)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        self.blocks = nn.ModuleList([CrossAttnBlock(cfg) for _ in range(cfg.depth)])
        self.head_nm = AdaLNBeforeHead(c)
        self.head = nn.Linear(c, 2 * cfg.codebook_dim)
        self.gate = GateContext()
        self.bf16_cross_attn = False
        #: the attached adapters (:class:`sace.adapters.AdapterSet`, set by ``attach_adapter``), or ``None``
        self.adapter_set = None
        self._rope_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    # -- conditions ------------------------------------------------------------------------------------
    def null_tokens(self, cond: Condition) -> Condition:
        """The learned null condition shaped like ``cond``: row i is ``cfg_uncond[:len_i]``
        (reference: ``autoregressive_infer_cfg``)."""
        lens = cond.lengths.tolist()
        if max(lens) > self.cfg.text_maxlen:
            raise SaceError(f"prompt of {max(lens)} tokens exceeds text_maxlen {self.cfg.text_maxlen}")
        t = cond.tokens.shape[1]
        tok = torch.zeros(len(lens), t, self.cfg.text_channels, dtype=self.cfg_uncond.dtype,
                          device=self.cfg_uncond.device)
        for i, n in enumerate(lens):
            tok[i, :n] = self.cfg_uncond[:n]
        return Condition(tok, cond.mask.clone(), cond.prompts, (True,) * len(lens))

    def prepare(self, cond: Condition, scale: int = 0) -> ConditionState:
        """Text path for one condition as seen by tokens of ``scale`` (adapters gated on that scale are
        applied). Returns a :class:`ConditionState`."""
        if cond.channels != self.cfg.text_channels:
            raise SaceError(f"condition has {cond.channels} channels; the model expects "
                            f"{self.cfg.text_channels} (wrong text encoder?)")
        p = next(self.parameters())
        tokens, mask = cond.tokens.to(p.device, p.dtype), cond.mask.to(p.device)
        with self.gate.scope(text_scale=scale):
            x = self.text_norm(tokens)
            pool = self.text_proj_for_sos.ca
            k, v = pool.keys_values(x)
            q = pool.mat_q.unsqueeze(2).expand(tokens.shape[0], -1, -1, -1).to(k.dtype)
            cond_vec = pool.proj(pool.attend(q, k, v, mask, self.bf16_cross_attn)).squeeze(1)
            memory = self.text_proj_for_ca(x)
            gss = self.shared_ada_lin(cond_vec).view(-1, 6, self.cfg.embed_dim)
            head_ss = self.head_nm.ada_lin(cond_vec).view(-1, 2, self.cfg.embed_dim)
        return ConditionState(cond_vec, gss, head_ss, memory, mask, cond.lengths.tolist(),
                              self.gate_signature(scale))

    def _ca_kv(self, i: int, st: ConditionState, scale: int) -> tuple[Tensor, Tensor]:
        if i not in st.kv:
            with self.gate.scope(text_scale=scale):
                st.kv[i] = self.blocks[i].ca.keys_values(st.memory)
        return st.kv[i]

    def rope(self, schedule: Schedule, device) -> tuple[Tensor, Tensor]:
        key = (schedule.grids, schedule.rope_grid, str(device))
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_table(schedule, self.cfg.head_dim, device=device)
        return self._rope_cache[key]

    # -- core ------------------------------------------------------------------------------------------
    def run_blocks(
        self,
        x: Tensor,
        segments: Sequence[Segment],
        scale_ids: Tensor,
        rope: tuple[Tensor, Tensor],
        attn_bias: Tensor | None,
        kv_cache: list | None = None,
    ) -> Tensor:
        """Run all blocks on ``x (B, N, C)``.

        ``segments`` cover ``[0, N)`` and give each token run its condition state; ``scale_ids (N,)``;
        ``rope`` tables ``(N, c/2)``; ``attn_bias (N, N_total)`` float (0/-inf) or ``None`` (attend to
        everything, i.e. KV-cached sampling); ``kv_cache`` a list (one entry per block) of ``[k, v]``
        that is extended in place.
        """
        b, n, c = x.shape
        ada = per_token(segments, lambda st: st.gss, b, c, 6)            # (B, 1 or N, 6, C)
        with self.gate.scope(token_scale_ids=scale_ids) as gate:
            return self._run_blocks(x, segments, scale_ids, rope, attn_bias, kv_cache, ada, gate)

    def _run_blocks(self, x, segments, scale_ids, rope, attn_bias, kv_cache, ada, gate) -> Tensor:
        b, n, c = x.shape
        for i, blk in enumerate(self.blocks):
            g1, g2, s1, s2, b1, b2 = (blk.ada_gss + ada).unbind(2)
            gate.token_scale_ids = scale_ids
            q, k, v = blk.sa.qkv(adaln(x, blk.eps, s1, b1), rope)
            k, v = extend_kv_cache(kv_cache, i, k, v)
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if attn_bias is None else attn_bias.to(q.dtype), scale=1.0)
            x = x + blk.sa.proj(o.transpose(1, 2).reshape(b, n, c)).mul(g1)
            # cross-attention, per segment (each has its own text memory)
            hca = blk.ca_norm(x)
            outs = []
            for s in segments:
                sl = slice(s.start, s.end)
                gate.token_scale_ids = scale_ids[sl]
                kk, vv = self._ca_kv(i, s.state, int(scale_ids[s.start]))
                qq = blk.ca.mat_q(hca[:, sl]).view(b, s.end - s.start, blk.ca.num_heads, -1).transpose(1, 2)
                outs.append(blk.ca.proj(blk.ca.attend(qq, kk, vv, s.state.mask, self.bf16_cross_attn)))
            x = x + (outs[0] if len(outs) == 1 else torch.cat(outs, 1))
            gate.token_scale_ids = scale_ids
            x = x + blk.ffn(adaln(x, blk.eps, s2, b2)).mul(g2)
        return x

    def head_logits(self, x: Tensor, segments: Sequence[Segment], scale_ids: Tensor) -> Tensor:
        """Hidden states ``(B, N, C)`` -> bit logits ``(B, N, d, 2)`` (float32)."""
        b, n, c = x.shape
        scale, shift = per_token(segments, lambda st: st.head_ss, b, c, 2).unbind(2)
        h = adaln(x, self.cfg.norm_eps, scale, shift)
        with self.gate.scope(token_scale_ids=scale_ids):
            return self.head(h).float().view(b, n, self.cfg.codebook_dim, 2)

    def embed_scale(self, k: int, inp: Tensor | None, sos_state: ConditionState) -> Tensor:
        """Input embeddings of scale ``k``: the SOS token for ``k = 0`` (``inp`` ignored), else
        ``word_embed(inp)`` for ``inp (B, n_k, d)``; plus ``lvl_embed[k]``."""
        if k == 0:
            x = sos_state.cond.unsqueeze(1) + self.pos_start
        else:
            x = self.word_embed(inp.to(self.word_embed.weight.dtype))
        return x + self.lvl_embed.weight[k]

    def forward_teacher_forced(
        self,
        states: Sequence[ConditionState],
        tf_inputs: Tensor | None,
        schedule: Schedule,
        num_scales: int,
    ) -> Tensor:
        """One block-causal pass over the first ``num_scales`` scales.

        Args:
            states: one :class:`ConditionState` per scale (index k used by scale k; the SOS is states[0]).
            tf_inputs: ``(B, >= L_n - 1, d)`` teacher-forcing inputs of scales 1.. (may be ``None`` when
                ``num_scales == 1``: a one-token forward).
            schedule: the scale schedule; ``num_scales`` its prefix length.
        Returns:
            logits ``(B, L_n, d, 2)`` float32, ``L_n = schedule.offsets[num_scales]``.
        """
        offs = schedule.offsets
        n = offs[num_scales]
        x0 = self.embed_scale(0, None, states[0])
        parts = [x0]
        if num_scales > 1:
            if tf_inputs is None or tf_inputs.shape[1] < n - 1:
                raise SaceError(f"teacher-forcing inputs cover {0 if tf_inputs is None else tf_inputs.shape[1]} "
                                f"tokens, {n - 1} needed for {num_scales} scales")
            emb = self.word_embed(tf_inputs[:, : n - 1].to(self.word_embed.weight.dtype))
            sid = schedule.scale_ids(emb.device)[1:n]
            parts.append(emb + self.lvl_embed(sid))
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        scale_ids = schedule.scale_ids(x.device)[:n]
        cos, sin = self.rope(schedule, x.device)
        bias = torch.where(scale_ids[:, None] >= scale_ids[None, :], 0.0, float("-inf"))
        segments = segments_of(states[:num_scales], offs)
        x = self.run_blocks(x, segments, scale_ids, (cos[:n], sin[:n]), bias)
        return self.head_logits(x, segments, scale_ids)

