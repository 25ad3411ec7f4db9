"""Infinity's BSQ multi-scale VAE (tokenizer): a Flux-style CNN autoencoder plus binary spherical
quantisation applied residually over the scales of a schedule.

Architecture facts: ``shared/docs/reference-models.md`` §1.6 (reference files
``infinity/models/bsq_vae/{flux_vqgan,multiscale_bsq,vae}.py`` and
``infinity/models/bitwise_self_correction.py`` of FoundationVision/Infinity):

* GroupNorm (32 groups, or 24 when 32 does not divide the channels; eps 1e-6), swish, no attention.
* Downsampling: pad right/bottom by one, then a stride-2 3x3 conv; upsampling: nearest x2 then a 3x3 conv.
* Encoder output has ``d`` channels (the codebook dimension); no quant conv; ``decode`` clamps to [-1, 1].
* BSQ: per location, L2-normalise the d-vector and take the sign: codes are ``+-1/sqrt(d)``;
  bit ``j`` is ``code_j > 0``.
* Multi-scale residual quantisation: residual ``r = F - fhat``; area-downsample ``r`` to the scale's grid
  (not at the last scale); quantise; ``fhat += trilinear-upsample(code)``; the teacher-forcing input of
  scale ``k+1`` is ``trilinear-resize(fhat -> grid_{k+1})``. Sampling uses the same rule, so training and
  inference agree.

Module and parameter names follow the official checkpoints (wrapped form: ``encoder.conv_in.conv.weight``,
``...norm1.norm.weight``) so that state dicts load strictly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SaceError


@dataclass
class VAEConfig:
    """Hyper-parameters of the BSQ VAE.

    ``patch_size`` is the encoder's spatial stride (16 for the 2B VAE, 8 for the 8B VAE);
    ``codebook_dim`` is d, bits per latent cell (32 for 2B, 14 for 8B, 16 for the tiny fixture).
    """

    codebook_dim: int = 32
    base_ch: int = 128
    num_res_blocks: int = 2
    encoder_ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4, 4])
    decoder_ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4, 4])
    patch_size: int = 16
    in_channels: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


class Conv(nn.Module):
    """A 2-D conv held in ``.conv`` (the official wrapper that also serves 3-D video convs)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Normalize(nn.Module):
    """GroupNorm held in ``.norm``: 32 groups, or 24 when 32 does not divide the channel count."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 32 == 0:
            groups = 32
        elif channels % 24 == 0:
            groups = 24
        else:
            raise SaceError(f"VAE channel count {channels} is divisible by neither 32 nor 24")
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.norm1 = Normalize(cin)
        self.conv1 = Conv(cin, cout, 3, padding=1)
        self.norm2 = Normalize(cout)
        self.conv2 = Conv(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = Conv(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = Conv(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        # torch convs have no asymmetric padding: pad right and bottom by one
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = Conv(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, mult = cfg.base_ch, cfg.encoder_ch_mult
        n_down = int(round(math.log2(cfg.patch_size)))
        if 2**n_down != cfg.patch_size or n_down > len(mult):
            raise SaceError(f"VAE patch_size {cfg.patch_size} needs a power of two <= 2**{len(mult)}")
        self.conv_in = Conv(cfg.in_channels, ch, 3, padding=1)
        in_mult = (1, *mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            block_in = ch * in_mult[i]
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(block_in, ch * m))
                block_in = ch * m
            if i < n_down:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = Conv(block_in, cfg.codebook_dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.block_1(h))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, mult = cfg.base_ch, cfg.decoder_ch_mult
        n_up = int(round(math.log2(cfg.patch_size)))
        block_in = ch * mult[-1]
        self.conv_in = Conv(cfg.codebook_dim, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        ups: list[nn.Module] = []
        for i in reversed(range(len(mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, ch * mult[i]))
                block_in = ch * mult[i]
            if 1 <= i <= n_up:
                level.upsample = Upsample(block_in)
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(block_in)
        self.conv_out = Conv(block_in, cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class _LFQ(nn.Module):
    """Holds the ``mask`` buffer of the official quantiser (bit weights 2^(d-1..0)) so that official
    state dicts load strictly; BSQ itself has no parameters."""

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("mask", 2 ** torch.arange(d - 1, -1, -1))


class _Quantizer(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.lfq = _LFQ(d)


@dataclass
class MultiScaleTokens:
    """Result of multi-scale quantisation.

    Attributes:
        bits: K tensors ``(B, h_k, w_k, d)`` int64 in {0, 1} (VAE grid; the clean labels).
        inputs: K-1 tensors ``(B, h_{k+1}, w_{k+1}, d)`` float: teacher-forcing inputs of scales 1..K-1.
        fhat: ``(B, d, H, W)`` the summed (possibly flipped) codes at the full latent grid.
    """

    bits: list[Tensor]
    inputs: list[Tensor]
    fhat: Tensor


def _up(x4: Tensor, size: tuple[int, int]) -> Tensor:
    # trilinear on a T=1 volume, exactly the reference's z_interplote_up on (B, d, 1, h, w)
    return F.interpolate(x4.unsqueeze(2), size=(1, *size), mode="trilinear").squeeze(2)


def _down_area(x4: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x4.unsqueeze(2), size=(1, *size), mode="area").squeeze(2)


class BSQVAE(nn.Module):
    """The BSQ VAE: ``encoder``, ``decoder`` and the quantiser buffers (``quantizer`` and its alias
    ``quantize``, both present in official state dicts).

    Images are ``(B, 3, H, W)`` float in [-1, 1]; raw features are ``(B, d, H/s, W/s)`` float32 with
    ``s = patch_size``.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.codebook_dim = cfg.codebook_dim
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantizer = _Quantizer(cfg.codebook_dim)
        self.quantize = self.quantizer  # alias kept by the reference; both key prefixes are saved

    @property
    def stride(self) -> int:
        return self.cfg.patch_size

    def encode(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> raw features ``(B, d, H/s, W/s)`` float32 (before quantisation)."""
        if images.ndim != 4 or images.shape[1] != self.cfg.in_channels:
            raise SaceError(f"VAE.encode expects (B, {self.cfg.in_channels}, H, W) images, got "
                            f"{tuple(images.shape)}")
        s = self.stride
        if images.shape[-1] % s or images.shape[-2] % s:
            raise SaceError(f"image size {tuple(images.shape[-2:])} is not a multiple of the VAE stride {s}")
        return self.encoder(images).float()

    def decode(self, fhat: Tensor) -> Tensor:
        """Summed codes ``(B, d, h, w)`` -> images ``(B, 3, h*s, w*s)`` clamped to [-1, 1]."""
        return self.decoder(fhat).clamp(-1, 1)

    # -- BSQ -----------------------------------------------------------------------------------------
    def quantize_bsq(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """BSQ of ``(B, d, h, w)`` features: returns (codes ``(B, d, h, w)`` = +-1/sqrt(d) with a
        straight-through gradient to ``z``, bits ``(B, h, w, d)`` int64)."""
        d = z.shape[1]
        x = F.normalize(z.permute(0, 2, 3, 1).float(), dim=-1)
        zhat = torch.where(x > 0, 1.0, -1.0).to(x.dtype) * (1.0 / d**0.5)
        q = x + (zhat - x).detach()
        bits = (q > 0).long()
        return q.permute(0, 3, 1, 2), bits

    @staticmethod
    def bits_to_codes(bits: Tensor) -> Tensor:
        """``(B, h, w, d)`` bits in {0, 1} -> codes ``(B, d, h, w)`` = L2-normalised (2*bit - 1), i.e.
        +-1/sqrt(d) (the reference's ``indices_to_codes(label_type='bit_label')``)."""
        codes = F.normalize(bits.float() * 2 - 1, dim=-1)
        return codes.permute(0, 3, 1, 2)

    def multiscale_quantize(
        self,
        raw: Tensor,
        vae_grids: tuple[tuple[int, int], ...] | list[tuple[int, int]],
        flip_strength: float = 0.0,
        flip_scales: int | None = None,
        generator: torch.Generator | None = None,
        interp: str = "trilinear",
    ) -> MultiScaleTokens:
        """Residual BSQ over the scales of a schedule, with optional Bitwise Self-Correction.

        Args:
            raw: ``(B, d, H, W)`` encoder features; ``(H, W)`` must equal ``vae_grids[-1]``.
            vae_grids: latent grid of every scale.
            flip_strength: maximum bit-flip probability (Infinity trains with 0.3); for every scale below
                ``flip_scales`` a strength is drawn uniformly from {0, 0.01, ..., flip_strength} and that
                fraction of input bits is flipped; labels stay clean and later residuals are re-derived
                from the flipped codes (reference: ``BitwiseSelfCorrection.flip_requant``).
            generator: torch.Generator for the flips (required for reproducibility when flipping).
            interp: how the summed codes are resized into the next scale's input (the reference's
                training path uses ``"trilinear"``; its sampler uses ``"area"``).
        Returns:
            :class:`MultiScaleTokens` with labels, teacher-forcing inputs and the summed codes.
        Raises:
            SaceError: shape mismatch.
        """
        grids = [tuple(g) for g in vae_grids]
        if tuple(raw.shape[-2:]) != grids[-1]:
            raise SaceError(f"raw features {tuple(raw.shape[-2:])} do not match the last grid {grids[-1]}")
        if raw.shape[1] != self.codebook_dim:
            raise SaceError(f"raw features have {raw.shape[1]} channels, the VAE has d={self.codebook_dim}")
        flip_scales = len(grids) if flip_scales is None else flip_scales
        fhat = torch.zeros_like(raw)
        bits_all, inputs = [], []
        for k, g in enumerate(grids):
            r = raw - fhat
            if k != len(grids) - 1:
                r = _down_area(r, g)
            q, bits = self.quantize_bsq(r)
            bits_all.append(bits)
            if flip_strength > 0 and k < flip_scales:
                steps = int(round(flip_strength * 100))
                p = int(torch.randint(0, steps + 1, (1,), generator=generator)) * 0.01
                flip = torch.rand(bits.shape, generator=generator) < p
                flipped = torch.where(flip.to(bits.device), 1 - bits, bits)
                q = self.bits_to_codes(flipped)
            fhat = fhat + _up(q, grids[-1])
            if k < len(grids) - 1:
                inputs.append(self.next_input(fhat, grids[k + 1], interp))
        return MultiScaleTokens(bits_all, inputs, fhat)

    def accumulate(self, fhat: Tensor | None, bits: Tensor, full_grid: tuple[int, int], last: bool) -> Tensor:
        """Add one scale's codes to the running sum ``fhat (B, d, H, W)`` (sampling rule: trilinear
        upsampling to the full grid; the last scale is added as is)."""
        codes = self.bits_to_codes(bits)
        add = codes if last else _up(codes, full_grid)
        return add if fhat is None else fhat + add

    @staticmethod
    def next_input(fhat: Tensor, grid: tuple[int, int], interp: str = "trilinear") -> Tensor:
        """Input of the next scale: ``fhat (B, d, H, W)`` resized to ``grid`` with ``interp``
        (``"trilinear"`` or ``"area"``), returned as ``(B, h, w, d)``."""
        if interp == "trilinear":
            x = _up(fhat, grid)
        elif interp == "area":
            x = _down_area(fhat, grid)
        else:
            raise SaceError(f"unknown interpolation {interp!r}; use 'trilinear' or 'area'")
        return x.permute(0, 2, 3, 1)

    def fhat_from_bits(self, bits: list[Tensor], vae_grids) -> Tensor:
        """Summed codes of a whole (VAE-grid) pyramid, ``(B, d, H, W)``."""
        full = tuple(vae_grids[-1])
        fhat = None
        for k, b in enumerate(bits):
            fhat = self.accumulate(fhat, b, full, last=(k == len(vae_grids) - 1))
        return fhat


def patchify_bits(x: Tensor, p: int) -> Tensor:
    """VAE grid -> token grid: ``(B, p*h, p*w, d)`` -> ``(B, h, w, p*p*d)``; token channel
    ``c*p*p + dy*p + dx`` (``pixel_unshuffle`` order, as Infinity-8B)."""
    if p == 1:
        return x
    return F.pixel_unshuffle(x.permute(0, 3, 1, 2).float(), p).permute(0, 2, 3, 1).to(x.dtype)


def unpatchify_bits(x: Tensor, p: int) -> Tensor:
    """Inverse of :func:`patchify_bits`: ``(B, h, w, p*p*d)`` -> ``(B, p*h, p*w, d)``."""
    if p == 1:
        return x
    return F.pixel_shuffle(x.permute(0, 3, 1, 2).float(), p).permute(0, 2, 3, 1).to(x.dtype)
