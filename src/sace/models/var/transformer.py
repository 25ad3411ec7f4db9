"""The class-conditional VAR transformer: block-causal next-scale prediction of VQ indices with AdaLN.

Architecture facts: ``shared/docs/reference-models.md`` §3 "Transformer" and "Transformer details"
(reference files ``models/var.py`` and ``models/basic_var.py`` of FoundationVision/VAR; VAR paper,
Tian et al. 2024, §3-4):

* condition: ``class_emb = Embedding(num_classes + 1, C)``; row ``num_classes`` is the null class used for
  classifier-free guidance. ``cond = class_emb(label)`` is also the SOS: scale 0 is ``cond + pos_start``;
  scale k > 0 is ``word_embed(input_k)`` (``Linear(Cvae, C)``). Absolute ``pos_1LC`` and ``lvl_embed[k]`` are
  added to every token once, at the input.
* block (pre-norm AdaLN, LayerNorm without affine, eps 1e-6): ``[g1, g2, s1, s2, b1, b2]`` from the block's own
  ``ada_lin = SiLU -> Linear(C, 6C)`` (``shared_aln=False``, d16-d30) or ``ada_gss + shared_ada_lin(cond)``
  (``shared_aln=True``); ``x += g1 * Attn(LN(x)(1+s1)+b1)``; ``x += g2 * FFN(LN(x)(1+s2)+b2)``; FFN is
  fc1 -> GELU(tanh) -> fc2.
* attention: one ``mat_qkv`` with bias ``[q_bias | 0 | v_bias]`` (``zero_k_bias`` is a saved zero buffer);
  with ``attn_l2_norm`` q and k are L2-normalised per head, q is multiplied by
  ``exp(min(scale_mul_1H11, ln 100))`` and the softmax scale is 1 (else ``0.25/sqrt(head_dim)``);
  block-causal mask ``attn_bias_for_masking`` (a token sees its scale and all earlier ones).
* head: ``LN(x)(1+scale)+shift`` with ``[scale, shift]`` from ``head_nm.ada_lin`` (SiLU -> Linear(C, 2C)),
  then ``head = Linear(C, V)`` -> logits ``(B, L, V)`` in float32.

Differences from the reference, all on purpose: labels are never dropped inside ``forward`` (the reference
drops them with ``cond_drop_rate`` even in ``eval()``; training code calls :func:`drop_labels`); drop-path is
not implemented (inactive at inference); every scale may carry its own class (per-scale AdaLN and head
conditions, SOS from scale 0) and linear layers may carry scale-gated adapters (:class:`GateContext`).
Parameter and buffer names follow the official ``var_d{16,20,24,30}.pth`` state dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SaceError
from ..blocks import FFN, AdaLNBeforeHead, AdapterHost, Segment, adaln, extend_kv_cache, per_token, segments_of
from ..gate import GateContext


@dataclass
class VARConfig:
    """Hyper-parameters of the VAR transformer (defaults: VAR-d16 at 256px)."""

    depth: int = 16                     # number of blocks d
    embed_dim: int = 1024               # width C (= 64 d in the release)
    num_heads: int = 16                 # heads (= d in the release; head_dim 64)
    mlp_ratio: float = 4.0              # FFN hidden = round(C * mlp_ratio)
    num_classes: int = 1000             # class labels 0..num_classes-1; num_classes is the null class
    vocab_size: int = 4096              # V, VQ codebook size (head outputs)
    z_channels: int = 32                # Cvae, width of the VQ codes fed to word_embed
    patch_nums: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 10, 13, 16])
    norm_eps: float = 1e-6              # LayerNorm eps (no affine parameters)
    shared_aln: bool = False            # one shared AdaLN projection plus per-block ada_gss (d36) or per-block
    attn_l2_norm: bool = True           # QK L2-norm with clamped learned per-head temperature
    cond_drop_rate: float = 0.1         # training-time probability of the null class (classifier-free guidance)

    def __post_init__(self) -> None:
        self.patch_nums = [int(p) for p in self.patch_nums]
        if self.embed_dim % self.num_heads:
            raise SaceError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @classmethod
    def from_depth(cls, depth: int, **kw) -> VARConfig:
        """The release's family rule (``build_vae_var``): width 64 d, d heads."""
        return cls(depth=depth, embed_dim=64 * depth, num_heads=depth, **kw)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return round(self.embed_dim * self.mlp_ratio)

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def num_tokens(self) -> int:
        """L, tokens of all scales (680 at 256px)."""
        return sum(p * p for p in self.patch_nums)

    @property
    def offsets(self) -> list[int]:
        out = [0]
        for p in self.patch_nums:
            out.append(out[-1] + p * p)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ConditionState:
    """Per-scale conditioning of one batch of labels (or class embeddings) as one gate signature sees it.

    Attributes:
        labels: ``(B,)`` int64 class labels (``num_classes`` = null), or ``None`` when the batch was prepared
            from continuous class embeddings (:meth:`VARTransformer.prepare` with a ``(B, C)`` float tensor).
        cond: ``(B, C)`` class embeddings (the SOS and the AdaLN input).
        ada: per block ``(B, 6, C)``: ``[g1, g2, s1, s2, b1, b2]``.
        head_ss: ``(B, 2, C)``: head ``[scale, shift]``.
    """

    labels: Tensor | None
    cond: Tensor
    ada: list[Tensor]
    head_ss: Tensor
    signature: tuple = ()


def drop_labels(labels: Tensor, rate: float, null_class: int, generator: torch.Generator | None = None) -> Tensor:
    """Training-time label dropout for classifier-free guidance: each label becomes ``null_class`` with
    probability ``rate`` (reference: ``VAR.forward``, ``torch.where(rand < cond_drop_rate, ...)``)."""
    if rate <= 0:
        return labels
    u = torch.rand(labels.shape, generator=generator, device=labels.device if generator is None else "cpu")
    return torch.where(u.to(labels.device) < rate, torch.full_like(labels, null_class), labels)


class SelfAttention(nn.Module):
    """Multi-head self-attention with optional QK L2-norm; names as ``basic_var.SelfAttention``."""

    def __init__(self, cfg: VARConfig):
        super().__init__()
        c = cfg.embed_dim
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.attn_l2_norm = cfg.attn_l2_norm
        self.mat_qkv = nn.Linear(c, 3 * c, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(c))
        self.v_bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("zero_k_bias", torch.zeros(c))
        if cfg.attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, cfg.num_heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100.0)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.proj = nn.Linear(c, c)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, N, C)`` -> q, k, v each ``(B, H, N, c)`` (normalised and temperature-scaled with l2-norm)."""
        b, n, _ = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        if type(self.mat_qkv) is nn.Linear:   # the reference's fused bias (an adapter wraps the layer)
            qkv = F.linear(x, self.mat_qkv.weight, bias)
        else:
            qkv = self.mat_qkv(x) + bias
        qkv = qkv.view(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.attn_l2_norm:
            q = F.normalize(q, dim=-1).mul(self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp())
            k = F.normalize(k, dim=-1)
        return q, k, v


class AdaLNSelfAttn(nn.Module):
    """One block: AdaLN-modulated self-attention and FFN (names as ``basic_var.AdaLNSelfAttn``)."""

    def __init__(self, cfg: VARConfig):
        super().__init__()
        c = cfg.embed_dim
        self.eps = cfg.norm_eps
        self.attn = SelfAttention(cfg)
        self.ffn = FFN(c, cfg.mlp_hidden)
        if cfg.shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, c) / c**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))


class VARTransformer(nn.Module, AdapterHost):
    """The VAR transformer with per-scale class conditions, KV-cached steps and gated adapters."""

    def __init__(self, cfg: VARConfig):
        super().__init__()
        self.cfg = cfg
        c, L = cfg.embed_dim, cfg.num_tokens
        init_std = math.sqrt(1 / c / 3)
        self.word_embed = nn.Linear(cfg.z_channels, c)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, c)
        nn.init.trunc_normal_(self.class_emb.weight, std=init_std)
        self.pos_start = nn.Parameter(torch.empty(1, cfg.patch_nums[0] ** 2, c))
        nn.init.trunc_normal_(self.pos_start, std=init_std)
        self.pos_1LC = nn.Parameter(torch.empty(1, L, c))
        nn.init.trunc_normal_(self.pos_1LC, std=init_std)
        self.lvl_embed = nn.Embedding(len(cfg.patch_nums), c)
        nn.init.trunc_normal_(self.lvl_embed.weight, std=init_std)
        if cfg.shared_aln:
            self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        self.blocks = nn.ModuleList([AdaLNSelfAttn(cfg) for _ in range(cfg.depth)])
        lvl = torch.cat([torch.full((p * p,), k) for k, p in enumerate(cfg.patch_nums)])
        self.register_buffer("lvl_1L", lvl.view(1, L))
        bias = torch.where(lvl[:, None] >= lvl[None, :], 0.0, float("-inf")).reshape(1, 1, L, L)
        self.register_buffer("attn_bias_for_masking", bias)
        self.head_nm = AdaLNBeforeHead(c)
        self.head = nn.Linear(c, cfg.vocab_size)
        self.gate = GateContext()
        #: the attached adapters (:class:`sace.adapters.AdapterSet`, set by ``attach_adapter``), or ``None``
        self.adapter_set = None

    # -- buffers defined by the architecture (restored after a meta-device build) ------------------------
    def reset_buffers(self) -> None:
        """Recompute ``lvl_1L``, ``attn_bias_for_masking`` and ``zero_k_bias`` from the config."""
        cfg = self.cfg
        lvl = torch.cat([torch.full((p * p,), k, device=self.lvl_1L.device) for k, p in enumerate(cfg.patch_nums)])
        self.lvl_1L.copy_(lvl.view(1, -1))
        self.attn_bias_for_masking.copy_(
            torch.where(lvl[:, None] >= lvl[None, :], 0.0, float("-inf")).view_as(self.attn_bias_for_masking))
        for blk in self.blocks:
            blk.attn.zero_k_bias.zero_()

    # -- conditions ------------------------------------------------------------------------------------
    def check_labels(self, labels: Tensor) -> Tensor:
        labels = labels.long().to(self.class_emb.weight.device)
        if labels.ndim != 1:
            raise SaceError(f"class labels must be a (B,) tensor, got shape {tuple(labels.shape)}")
        bad = (labels < 0) | (labels > self.cfg.num_classes)
        if bool(bad.any()):
            raise SaceError(f"class labels {labels[bad].tolist()} out of range; use 0..{self.cfg.num_classes - 1} "
                            f"or {self.cfg.num_classes} for the null class")
        return labels

    def class_embeddings(self, inp: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(labels or None, class embeddings (B, C))`` of ``inp``: class labels ``(B,)`` (integer) are looked up in
        ``class_emb``; continuous class embeddings ``(B, C)`` (floating point, ``C = embed_dim``) are taken as they
        are (a continuous condition: an attack's optimised embedding, or a learned one).

        Raises:
            SaceError: labels out of range, or embeddings of another width or with non-finite values.
        """
        if inp.is_floating_point() and inp.ndim == 2:
            c = self.cfg.embed_dim
            if inp.shape[1] != c:
                raise SaceError(f"class embeddings must be (B, {c}) for this VAR, got shape {tuple(inp.shape)}")
            if not bool(torch.isfinite(inp).all()):
                raise SaceError("class embeddings hold non-finite values")
            return None, inp.to(device=self.class_emb.weight.device, dtype=self.class_emb.weight.dtype)
        labels = self.check_labels(inp)
        return labels, self.class_emb(labels)

    def prepare(self, labels: Tensor, scale: int = 0) -> ConditionState:
        """AdaLN and head conditions of ``labels (B,)`` -- or of continuous class embeddings ``(B, C)`` float
        (:meth:`class_embeddings`) -- as tokens of ``scale`` see them (adapters on the condition path gated on
        that scale apply). An embedding equal to a class's row of ``class_emb`` gives bit-identical states."""
        c = self.cfg.embed_dim
        with self.gate.scope(text_scale=scale):
            labels, cond = self.class_embeddings(labels)                           # (B, C)
            if self.cfg.shared_aln:
                shared = self.shared_ada_lin(cond).view(-1, 6, c)
                ada = [(blk.ada_gss[0] + shared) for blk in self.blocks]
            else:
                ada = [blk.ada_lin(cond).view(-1, 6, c) for blk in self.blocks]
            head_ss = self.head_nm.ada_lin(cond).view(-1, 2, c)
        return ConditionState(labels, cond, ada, head_ss, self.gate_signature(scale))

    # -- core ------------------------------------------------------------------------------------------
    def embed_scale(self, k: int, inp: Tensor | None, sos_state: ConditionState) -> Tensor:
        """Input tokens of scale ``k``: ``(B, pn_k**2, C)``. Scale 0 is the SOS ``cond + pos_start``
        (``inp`` ignored); scale k > 0 is ``word_embed(inp)`` for ``inp (B, pn_k**2, Cvae)``; both plus
        ``lvl_embed[k] + pos_1LC`` of the scale's positions."""
        offs = self.cfg.offsets
        lvl_pos = self.lvl_embed.weight[k] + self.pos_1LC[:, offs[k]:offs[k + 1]]
        if k == 0:
            x = sos_state.cond.unsqueeze(1) + self.pos_start
        else:
            with self.gate.scope(token_scale_ids=self.lvl_1L[0, offs[k]:offs[k + 1]]):
                x = self.word_embed(inp.to(self.word_embed.weight.dtype))
        return x + lvl_pos

    def run_blocks(self, x: Tensor, segments: Sequence[Segment], scale_ids: Tensor, attn_bias: Tensor | None,
                   kv_cache: list | None = None) -> Tensor:
        """All blocks on ``x (B, N, C)``; ``segments`` give each token run its condition, ``scale_ids (N,)``
        the scale of each token, ``attn_bias (N, N_total)`` 0/-inf or ``None`` (KV-cached steps), ``kv_cache``
        one ``(k, v)`` per block, extended in place."""
        b, n, c = x.shape
        with self.gate.scope(token_scale_ids=scale_ids):
            for i, blk in enumerate(self.blocks):
                ada = per_token(segments, lambda st, i=i: st.ada[i], b, c, 6)       # (B, 1 or N, 6, C)
                g1, g2, s1, s2, b1, b2 = ada.unbind(2)
                q, k, v = blk.attn.qkv(adaln(x, blk.eps, s1, b1))
                k, v = extend_kv_cache(kv_cache, i, k, v)
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=blk.attn.scale)
                x = x + blk.attn.proj(o.transpose(1, 2).reshape(b, n, c)).mul_(g1)
                x = x + blk.ffn(adaln(x, blk.eps, s2, b2)).mul(g2)
        return x

    def head_logits(self, x: Tensor, segments: Sequence[Segment], scale_ids: Tensor) -> Tensor:
        """Hidden states ``(B, N, C)`` -> index logits ``(B, N, V)`` float32."""
        b, n, c = x.shape
        scale, shift = per_token(segments, lambda st: st.head_ss, b, c, 2).unbind(2)
        h = adaln(x.float(), self.cfg.norm_eps, scale, shift)
        with self.gate.scope(token_scale_ids=scale_ids):
            return self.head(h.to(self.head.weight.dtype)).float()

    def forward_teacher_forced(self, states: Sequence[ConditionState], tf_inputs: Tensor | None,
                               num_scales: int) -> Tensor:
        """One block-causal pass over the first ``num_scales`` scales.

        Args:
            states: one :class:`ConditionState` per scale (the SOS comes from ``states[0]``).
            tf_inputs: ``(B, >= L_n - 1, Cvae)`` inputs of scales 1.. (``x_BLCv_wo_first_l``); may be ``None``
                when ``num_scales == 1`` (a one-token forward).
        Returns:
            logits ``(B, L_n, V)`` float32, ``L_n = sum_{k < num_scales} pn_k**2``.
        Raises:
            SaceError: too few teacher-forcing tokens or scales out of range.
        """
        offs = self.cfg.offsets
        if not 1 <= num_scales <= len(self.cfg.patch_nums):
            raise SaceError(f"{num_scales} scales asked of a {len(self.cfg.patch_nums)}-scale VAR")
        n = offs[num_scales]
        if num_scales > 1 and (tf_inputs is None or tf_inputs.shape[1] < n - 1):
            got = 0 if tf_inputs is None else tf_inputs.shape[1]
            raise SaceError(f"teacher-forcing inputs cover {got} tokens, {n - 1} needed for {num_scales} scales")
        parts = [self.embed_scale(0, None, states[0])]
        for k in range(1, num_scales):
            parts.append(self.embed_scale(k, tf_inputs[:, offs[k] - 1:offs[k + 1] - 1], states[0]))
        x = torch.cat(parts, 1)
        scale_ids = self.lvl_1L[0, :n]
        segments = segments_of(states[:num_scales], offs)
        x = self.run_blocks(x, segments, scale_ids, self.attn_bias_for_masking[:, :, :n, :n].to(x.dtype))
        return self.head_logits(x, segments, scale_ids)
