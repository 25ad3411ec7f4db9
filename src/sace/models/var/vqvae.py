"""VAR's VQVAE: CNN autoencoder + 3x3 quant convs + the multi-scale residual quantiser.

Facts: ``shared/docs/reference-models.md`` §3 (reference file ``models/vqvae.py`` of FoundationVision/VAR).
The release ``vae_ch160v4096z32.pth`` is ``ch=160, ch_mult=(1,1,2,2,4), num_res_blocks=2``, V = 4096,
z = 32, ``quant_resi=0.5``, ``share_quant_resi=4``, stride 16; the constructor of the reference hard-codes the
CNN layout, which is configurable here (the tiny parity fixture uses ``ch_mult=(1,1,1,2,1)``, 1 block).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ...errors import SaceError
from .autoencoder import Decoder, Encoder
from .quantizer import MultiScaleVQ


@dataclass
class VQVAEConfig:
    """Hyper-parameters of VAR's VQVAE (defaults: the released ``vae_ch160v4096z32``)."""

    vocab_size: int = 4096                   # V, codebook entries shared by all scales
    z_channels: int = 32                     # Cvae, latent / code width
    ch: int = 160                            # base CNN width (a multiple of 32: GroupNorm(32))
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])  # width per level; stride 2**(n-1)
    num_res_blocks: int = 2                  # ResBlocks per encoder level (decoder: one more)
    using_sa: bool = True                    # attention after the ResBlocks of the lowest resolution
    using_mid_sa: bool = True                # attention in the middle block
    dropout: float = 0.0
    quant_conv_ks: int = 3                   # kernel of quant_conv / post_quant_conv
    quant_resi: float = 0.5                  # phi blend ratio r
    share_quant_resi: int = 4                # number of partially shared phis (0: per scale, 1: one)
    beta: float = 0.25                       # commitment weight (training)
    patch_nums: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 10, 13, 16])

    def __post_init__(self) -> None:
        self.ch_mult = [int(m) for m in self.ch_mult]
        self.patch_nums = [int(p) for p in self.patch_nums]
        if not self.patch_nums or self.patch_nums[0] < 1 or sorted(self.patch_nums) != self.patch_nums:
            raise SaceError(f"patch_nums must be increasing positive sides, got {self.patch_nums}")

    @property
    def downsample(self) -> int:
        """Pixels per latent cell (16 for the release)."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


class VQVAE(nn.Module):
    """Images <-> multi-scale token indices.

    Parameter names follow the reference ``VQVAE.state_dict()``: ``encoder.*``, ``decoder.*``,
    ``quant_conv.*``, ``post_quant_conv.*``, ``quantize.*``.
    """

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        z = cfg.z_channels
        cnn = dict(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks, z_channels=z,
                   using_sa=cfg.using_sa, using_mid_sa=cfg.using_mid_sa, dropout=cfg.dropout)
        self.encoder = Encoder(**cnn)
        self.decoder = Decoder(**cnn)
        ks = cfg.quant_conv_ks
        self.quant_conv = nn.Conv2d(z, z, ks, padding=ks // 2)
        self.post_quant_conv = nn.Conv2d(z, z, ks, padding=ks // 2)
        self.quantize = MultiScaleVQ(cfg.vocab_size, z, cfg.patch_nums, cfg.quant_resi, cfg.share_quant_resi,
                                     cfg.beta)

    @property
    def image_size(self) -> int:
        """Side in pixels of the images of the configured scales."""
        return self.cfg.patch_nums[-1] * self.cfg.downsample

    def features(self, images: Tensor) -> Tensor:
        """``quant_conv(encoder(x))``: images ``(B, 3, S, S)`` in [-1, 1] -> ``(B, z, pn_K, pn_K)``.

        Raises:
            SaceError: the image side is not :attr:`image_size`.
        """
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (self.image_size,) * 2:
            raise SaceError(f"images must be (B, 3, {self.image_size}, {self.image_size}) in [-1, 1], "
                            f"got {tuple(images.shape)}")
        return self.quant_conv(self.encoder(images))

    def images_to_indices(self, images: Tensor) -> list[Tensor]:
        """Images ``(B, 3, S, S)`` in [-1, 1] -> K index grids ``(B, pn_k**2)`` int64 (``img_to_idxBl``)."""
        return self.quantize.quantize(self.features(images))

    def decode_fhat(self, f_hat: Tensor) -> Tensor:
        """Summed codes ``(B, z, pn_K, pn_K)`` -> images ``(B, 3, S, S)`` clamped to [-1, 1] (``fhat_to_img``)."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)

    def indices_to_images(self, idx: Sequence[Tensor]) -> Tensor:
        """K index grids -> images ``(B, 3, S, S)`` in [-1, 1] (``idxBl_to_img(..., last_one=True)``)."""
        return self.decode_fhat(self.quantize.fhat_from_indices(idx))

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode, quantise over all scales and decode: ``(B, 3, S, S)`` in [-1, 1] -> same."""
        return self.indices_to_images(self.images_to_indices(images))
