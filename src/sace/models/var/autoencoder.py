"""The convolutional encoder/decoder of VAR's VQVAE (an LDM "vq-f16" style CNN).

Architecture facts: ``shared/docs/reference-models.md`` §3 "VQVAE layout" (reference file
``models/basic_vae.py`` of FoundationVision/VAR):

* GroupNorm with 32 groups, eps 1e-6, affine; SiLU ("swish") activations.
* ResBlock: GN -> SiLU -> 3x3 conv -> GN -> SiLU -> dropout -> 3x3 conv, plus the input (through a 1x1
  ``nin_shortcut`` when the channel count changes).
* Single-head spatial self-attention (``AttnBlock``): GN, one 1x1 ``qkv`` conv split [q, k, v], scores
  scaled by ``C**-0.5``, a 1x1 ``proj_out``, residual. It sits after every ResBlock of the
  lowest-resolution level and in the middle block (``block_1, attn_1, block_2``).
* Encoder: ``conv_in``; per level ``num_res_blocks`` ResBlocks and, except at the last level, a
  ``Downsample2x`` (zero-pad right/bottom by 1, 3x3 stride-2 conv); mid; GN -> SiLU -> ``conv_out`` to the
  z channels.
* Decoder: ``conv_in``; mid; levels from the lowest resolution up, ``num_res_blocks + 1`` ResBlocks each
  and, except at level 0, an ``Upsample2x`` (nearest x2, 3x3 conv); GN -> SiLU -> ``conv_out`` to RGB.
  ``decoder.up.{i}`` is indexed by resolution level (0 = full resolution), executed in reverse.

Module names follow the official state dicts (``encoder.down.{i}.block.{j}.conv1.weight``, ...) so that
``vae_ch160v4096z32.pth`` loads with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SaceError


def group_norm(channels: int) -> nn.GroupNorm:
    """The VQVAE's only normalisation: 32 groups, eps 1e-6, affine (so ``channels`` % 32 == 0)."""
    if channels % 32:
        raise SaceError(f"VQVAE channel count {channels} is not a multiple of 32 (GroupNorm has 32 groups); "
                        "use a base `ch` that is a multiple of 32")
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block ``(B, cin, H, W) -> (B, cout, H, W)``."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all ``H*W`` positions, ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)       # each (B, C, HW)
        attn = torch.bmm(q.transpose(1, 2), k).mul_(c ** -0.5).softmax(dim=2)    # (B, HW_q, HW_k)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)             # (B, C, HW_q)
        return x + self.proj_out(out)


class Downsample2x(nn.Module):
    """Zero-pad right and bottom by one, then a 3x3 stride-2 conv: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample2x(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ResBlocks (each followed by attention when ``attn``) and a resampler."""

    def __init__(self, cin: int, cout: int, num_blocks: int, attn: bool, resample: str | None, dropout: float):
        super().__init__()
        self.block = nn.ModuleList([ResBlock(cin if j == 0 else cout, cout, dropout) for j in range(num_blocks)])
        if attn:
            self.attn = nn.ModuleList([AttnBlock(cout) for _ in range(num_blocks)])
        if resample == "down":
            self.downsample = Downsample2x(cout)
        elif resample == "up":
            self.upsample = Upsample2x(cout)

    def forward(self, x: Tensor) -> Tensor:
        attn = getattr(self, "attn", None)
        for j, blk in enumerate(self.block):
            x = blk(x)
            if attn is not None:
                x = attn[j](x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


class Mid(nn.Module):
    """The middle block: ResBlock, attention (optional), ResBlock at constant channels."""

    def __init__(self, channels: int, attn: bool, dropout: float):
        super().__init__()
        self.block_1 = ResBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels) if attn else nn.Identity()
        self.block_2 = ResBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Images ``(B, 3, H, W)`` in [-1, 1] -> features ``(B, z, H/2**(n-1), W/2**(n-1))``, n = len(ch_mult)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int,
                 in_channels: int = 3, using_sa: bool = True, using_mid_sa: bool = True, dropout: float = 0.0):
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch] + [ch * m for m in ch_mult]
        self.down = nn.ModuleList([
            Level(widths[i], widths[i + 1], num_res_blocks, attn=using_sa and i == n - 1,
                  resample="down" if i != n - 1 else None, dropout=dropout)
            for i in range(n)])
        top = widths[-1]
        self.mid = Mid(top, using_mid_sa, dropout)
        self.norm_out = group_norm(top)
        self.conv_out = nn.Conv2d(top, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Features ``(B, z, h, w)`` -> images ``(B, 3, h*2**(n-1), w*2**(n-1))`` (unclamped)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int,
                 out_channels: int = 3, using_sa: bool = True, using_mid_sa: bool = True, dropout: float = 0.0):
        super().__init__()
        n = len(ch_mult)
        top = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = Mid(top, using_mid_sa, dropout)
        # level i takes the output width of level i+1 (top for the lowest resolution); built in forward order
        # of execution (lowest resolution first) and stored by resolution index, as the checkpoints are
        levels: list[Level] = [None] * n  # type: ignore[list-item]
        cin = top
        for i in reversed(range(n)):
            cout = ch * ch_mult[i]
            levels[i] = Level(cin, cout, num_res_blocks + 1, attn=using_sa and i == n - 1,
                              resample="up" if i != 0 else None, dropout=dropout)
            cin = cout
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))
