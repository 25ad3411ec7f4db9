"""VAR's multi-scale residual vector quantiser: one codebook shared by every scale and the phi
residual convolutions.

Facts: ``shared/docs/reference-models.md`` §3 "VQVAE", "Quantizer numerics" (reference file
``models/quant.py`` of FoundationVision/VAR, ``VectorQuantizer2``, ``Phi*``); VAR paper (Tian et al.
2024, Algorithm 1-2):

* encoding (Alg. 1): ``f_rest = f``, ``fhat = 0``; per scale k: area-resize ``f_rest`` to ``pn_k`` (not at
  the last scale), nearest code by ``|z|^2 + |e|^2 - 2 z.e`` (first minimum), embed it, bicubic-upsample to
  the full latent grid (not at the last scale), ``h = phi_k(...)``, ``fhat += h``, ``f_rest -= h``.
* teacher-forcing input of scale k+1: ``area(fhat_k -> pn_{k+1})`` with ``fhat_k`` the sum over scales <= k.
* ``phi(h) = (1 - r) h + r conv3x3(h)`` with ``r = |quant_resi|`` (0.5 in the release); ``r ~ 0`` is the
  identity. ``share_quant_resi`` = 0: one phi per scale, 1: one phi for all, n > 1: n phis picked by the
  nearest tick to ``k/(K-1)``, ticks ``linspace(1/(3n), 1 - 1/(3n), n)`` for n = 4 and
  ``linspace(1/(2n), 1 - 1/(2n), n)`` otherwise, with the reference's float64 tie-breaking
  (7 scales -> [0,0,1,2,2,3,3]; 10 scales -> [0,0,1,1,1,2,2,3,3,3]).

Training (:meth:`MultiScaleVQ.forward_train`, VAR's ``VectorQuantizer2.forward``): the same residual loop with
gradients to the codebook and phi, ``L_vq = mean_k [beta |sg(fhat_k) - f|^2 + |fhat_k - sg(f)|^2]`` and a
straight-through ``f + sg(fhat - f)`` for the decoder (van den Oord et al. 2017; VAR paper §3.2).

Memory layouts match the reference path by path (channels-last views where it embeds indices, contiguous
maps in the encoder), because the convolution numerics of phi depend on them at the 1e-7 level.
Parameter names follow ``VectorQuantizer2`` (``embedding.weight``, ``quant_resi.qresi_ls.{i}.*``,
``ema_vocab_hit_SV``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SaceError


class Phi(nn.Conv2d):
    """``h -> (1 - r) h + r conv3x3(h)``, shape ``(B, C, H, W)`` preserved."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, 3, padding=1)
        self.resi_ratio = abs(ratio)

    def forward(self, h: Tensor) -> Tensor:
        return h.mul(1 - self.resi_ratio) + super().forward(h).mul_(self.resi_ratio)


def phi_ticks(n: int) -> np.ndarray:
    """The reference's tick positions of ``n`` partially shared phis (float64)."""
    return np.linspace(1 / 3 / n, 1 - 1 / 3 / n, n) if n == 4 else np.linspace(1 / 2 / n, 1 - 1 / 2 / n, n)


def phi_index_table(num_scales: int, share_quant_resi: int) -> list[int]:
    """Which phi each scale uses (a list of ``num_scales`` ints).

    ``share_quant_resi`` = 1 -> all 0; 0 -> one phi per scale picked by the same nearest-tick rule over
    ``num_scales`` ticks; n > 1 -> nearest of n ticks to ``k/(K-1)``, float64 as the reference (ties go to
    the higher index through linspace rounding).
    """
    if share_quant_resi == 1:
        return [0] * num_scales
    n = num_scales if share_quant_resi == 0 else share_quant_resi
    ticks = phi_ticks(n)
    denom = max(num_scales - 1, 1)
    return [int(np.argmin(np.abs(ticks - k / denom))) for k in range(num_scales)]


class PhiBank(nn.Module):
    """The phi convolutions, held as ``qresi_ls`` (partially shared, the release), ``qresi`` (one
    shared) or a plain list (one per scale) to match each variant's checkpoint keys."""

    def __init__(self, channels: int, ratio: float, share_quant_resi: int, num_scales: int):
        super().__init__()
        make = (lambda: Phi(channels, ratio)) if abs(ratio) > 1e-6 else nn.Identity
        self.share = share_quant_resi
        if share_quant_resi == 1:
            self.qresi = make()
        else:
            n = num_scales if share_quant_resi == 0 else share_quant_resi
            self.qresi_ls = nn.ModuleList([make() for _ in range(n)])
        self.table = phi_index_table(num_scales, share_quant_resi)

    def forward(self, k: int, h: Tensor) -> Tensor:
        """Apply scale ``k``'s phi to ``h`` ``(B, C, H, W)``."""
        if self.share == 1:
            return self.qresi(h)
        return self.qresi_ls[self.table[k]](h)


class MultiScaleVQ(nn.Module):
    """Residual multi-scale VQ over one shared codebook ``(V, C)`` for square scales ``patch_nums``.

    Args:
        vocab_size: V (4096 in the release). channels: C, the latent width ``Cvae`` (32).
        patch_nums: side of each scale, ending with the latent grid side (16 at 256px).
        quant_resi: phi blend ratio r (0.5). share_quant_resi: see :func:`phi_index_table` (4).
        beta: commitment weight (training only; kept for the config).
    """

    def __init__(self, vocab_size: int, channels: int, patch_nums: Sequence[int], quant_resi: float = 0.5,
                 share_quant_resi: int = 4, beta: float = 0.25):
        super().__init__()
        self.vocab_size, self.channels = int(vocab_size), int(channels)
        self.patch_nums = tuple(int(p) for p in patch_nums)
        self.beta = beta
        self.embedding = nn.Embedding(self.vocab_size, self.channels)
        self.quant_resi = PhiBank(self.channels, quant_resi, share_quant_resi, len(self.patch_nums))
        # usage statistics of the reference trainer, saved in the checkpoints (unused at inference)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), self.vocab_size))

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def _full(self) -> tuple[int, int]:
        return self.patch_nums[-1], self.patch_nums[-1]

    def _check(self, n: int) -> None:
        if n > self.num_scales:
            raise SaceError(f"{n} scales given, the quantiser has {self.num_scales} ({self.patch_nums})")

    def nearest(self, z_NC: Tensor) -> Tensor:
        """Index ``(N,)`` int64 of the nearest code to each row of ``z_NC`` ``(N, C)`` (squared L2, fp32,
        first minimum), computed as the reference does (``|z|^2 + |e|^2``, then ``addmm_(-2 z E^T)``)."""
        e = self.embedding.weight.data.float()
        d = z_NC.float().square().sum(1, keepdim=True) + e.square().sum(1)
        d.addmm_(z_NC.float(), e.T, alpha=-2, beta=1)
        return d.argmin(1)

    def _residual_step(self, k: int, f_rest: Tensor) -> tuple[Tensor, Tensor]:
        """Scale ``k`` of the residual quantisation of ``f_rest`` ``(B, C, H, W)`` (encoding and training alike):
        the nearest-code indices ``(B * pn_k**2,)`` int64 of the area-downsampled residual and their code map
        ``phi_k(bicubic_up(codes))`` ``(B, C, H, W)`` (no resizing at the last scale)."""
        b, c, h, w = f_rest.shape
        pn = self.patch_nums[k]
        last = k == self.num_scales - 1
        z = f_rest if last else F.interpolate(f_rest, size=(pn, pn), mode="area")
        idx_N = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, c))
        code = self.embedding(idx_N.view(b, pn, pn)).permute(0, 3, 1, 2)
        code = code if last else F.interpolate(code, size=(h, w), mode="bicubic")
        return idx_N, self.quant_resi(k, code.contiguous())

    def embed_grid(self, idx_Bl: Tensor, pn: int) -> Tensor:
        """Codes of a flattened ``(B, pn*pn)`` index grid as ``(B, C, pn, pn)`` (a channels-last view,
        the reference's layout)."""
        b = idx_Bl.shape[0]
        return self.embedding(idx_Bl).transpose(1, 2).view(b, self.channels, pn, pn)

    def quantize(self, f_BChw: Tensor, to_fhat: bool = False) -> list[Tensor]:
        """Encode features ``(B, C, H, W)`` (``H = W = patch_nums[-1]``) into per-scale indices.

        Returns:
            K tensors ``(B, pn_k**2)`` int64 (row-major), or with ``to_fhat`` the K running sums
            ``fhat_k`` ``(B, C, H, W)`` after each scale.
        """
        b, c, h, w = f_BChw.shape
        if (h, w) != self._full() or c != self.channels:
            raise SaceError(f"features are {tuple(f_BChw.shape[1:])}, the quantiser expects "
                            f"({self.channels}, {self.patch_nums[-1]}, {self.patch_nums[-1]})")
        f_rest = f_BChw.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        out = []
        for k, pn in enumerate(self.patch_nums):
            idx_N, h_BChw = self._residual_step(k, f_rest)
            f_hat.add_(h_BChw)
            f_rest.sub_(h_BChw)
            out.append(f_hat.clone() if to_fhat else idx_N.reshape(b, pn * pn))
        return out

    def add_scale(self, k: int, f_hat: Tensor | None, code_BChw: Tensor) -> tuple[Tensor, Tensor]:
        """Add scale ``k``'s codes ``(B, C, pn_k, pn_k)`` to the running sum and return ``(fhat, next)``:
        ``fhat`` ``(B, C, H, W)`` (updated in place when given) and the next scale's input map
        ``area(fhat -> pn_{k+1})`` ``(B, C, pn_{k+1}, pn_{k+1})`` (``fhat`` itself at the last scale)."""
        self._check(k + 1)
        if f_hat is None:
            f_hat = code_BChw.new_zeros(code_BChw.shape[0], self.channels, *self._full())
        last = k == self.num_scales - 1
        up = code_BChw if last else F.interpolate(code_BChw, size=self._full(), mode="bicubic")
        f_hat.add_(self.quant_resi(k, up))
        if last:
            return f_hat, f_hat
        pn = self.patch_nums[k + 1]
        return f_hat, F.interpolate(f_hat, size=(pn, pn), mode="area")

    def next_inputs(self, idx: Sequence[Tensor]) -> Tensor:
        """Teacher-forcing inputs of scales 1..n from indices of scales 0..n-1 (``idxBl_to_var_input``).

        Args:
            idx: n <= K tensors ``(B, pn_k**2)`` int64.
        Returns:
            ``(B, sum_{k=1}^{n'} pn_k**2, C)`` float, n' = min(n, K-1); zero tokens when n' = 0.
        """
        self._check(len(idx))
        b = idx[0].shape[0]
        f_hat, parts = None, []
        for k in range(min(len(idx), self.num_scales - 1)):
            f_hat, nxt = self.add_scale(k, f_hat, self.embed_grid(idx[k], self.patch_nums[k]))
            parts.append(nxt.view(b, self.channels, -1).transpose(1, 2))
        if not parts:
            return self.embedding.weight.new_zeros(b, 0, self.channels)
        return torch.cat(parts, 1)

    def fhat_from_indices(self, idx: Sequence[Tensor]) -> Tensor:
        """The summed codes ``fhat`` ``(B, C, H, W)`` of a full index pyramid (K tensors ``(B, pn_k**2)``)."""
        if len(idx) != self.num_scales:
            raise SaceError(f"{len(idx)} scales of indices given, the quantiser has {self.num_scales}")
        f_hat = None
        for k, pn in enumerate(self.patch_nums):
            f_hat, _ = self.add_scale(k, f_hat, self.embed_grid(idx[k], pn))
        return f_hat

    def forward_train(self, f_BChw: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Training pass: ``(fhat_st, L_vq, indices)``.

        Args:
            f_BChw: encoder features ``(B, C, pn_K, pn_K)`` (with gradient).
        Returns:
            ``fhat_st`` ``(B, C, pn_K, pn_K)`` (forward value: the summed codes; gradient: straight through to
            ``f``), the scalar VQ loss (codebook + beta * commitment, averaged over scales) and the K index
            grids ``(B, pn_k**2)``.
        """
        b = f_BChw.shape[0]
        f_sg = f_BChw.detach()
        f_rest = f_sg.clone()
        f_hat = torch.zeros_like(f_sg)
        loss = f_BChw.new_zeros(())
        idx_all = []
        for k, pn in enumerate(self.patch_nums):
            idx_N, h_BChw = self._residual_step(k, f_rest)
            f_hat = f_hat + h_BChw
            f_rest = f_rest - h_BChw.detach()
            loss = loss + self.beta * F.mse_loss(f_hat.detach(), f_BChw) + F.mse_loss(f_hat, f_sg)
            with torch.no_grad():
                self.ema_vocab_hit_SV[k].mul_(0.99).add_(torch.bincount(idx_N, minlength=self.vocab_size).float(),
                                                         alpha=0.01)
            idx_all.append(idx_N.view(b, pn * pn))
        return f_BChw + (f_hat - f_BChw).detach(), loss / self.num_scales, idx_all
