"""CLIP score of generated images against their prompts, through ``transformers``' :class:`CLIPModel`.

CLIP score (Hessel et al. 2021, "CLIPScore"; the convention of ``torchmetrics.multimodal.CLIPScore`` that the
erasure papers report, e.g. S-VARE's 31.7 on COCO for Infinity-2B, ``shared/docs/related-work.md`` §6.5):
``100 * max(cos(E_I(image), E_T(prompt)), 0)`` per pair, averaged over the set; range ``[0, 100]``.

No CLIP weights install offline (``shared/docs/offline-resources.md`` §B): pass a hub id
(``openai/clip-vit-large-patch14``, downloaded where the network allows) or a local folder saved with
``save_pretrained`` (model + tokenizer). Images are preprocessed in torch as CLIP's image processor does:
shortest side resized to the model's ``image_size`` (bicubic, antialiased), centre crop, normalised with
the OpenAI CLIP mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..concepts.detectors import to_float_images
from ..errors import SaceError

__all__ = ["CLIPScorer", "CLIP_MEAN", "CLIP_STD"]

#: OpenAI CLIP normalisation (``transformers.image_utils.OPENAI_CLIP_MEAN`` / ``_STD``)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPScorer:
    """Per-image CLIP score of ``(image, prompt)`` pairs.

    Args:
        model: a hub id or local folder (loaded with ``CLIPModel.from_pretrained`` and
            ``AutoTokenizer.from_pretrained``), or a built :class:`transformers.CLIPModel` (then ``tokenizer``
            is required).
        tokenizer: a tokenizer callable ``(list[str], padding, truncation, max_length, return_tensors)``.
        device: where CLIP runs. batch_size: pairs per forward pass.

    Raises:
        SaceError: the model or tokenizer cannot be loaded (the message says what to pass).
    """

    def __init__(self, model, tokenizer=None, *, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        from transformers import AutoTokenizer, CLIPModel

        if isinstance(model, str):
            try:
                clip = CLIPModel.from_pretrained(model)
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            except (OSError, ValueError) as e:
                raise SaceError(f"cannot load CLIP from {model!r} ({type(e).__name__}); pass a local folder with "
                                "a saved CLIPModel and tokenizer (e.g. openai/clip-vit-large-patch14 downloaded "
                                "where you have network) or leave --clip-model unset to skip CLIP score") from e
            self.name = model
        else:
            clip = model
            if tokenizer is None:
                raise SaceError("CLIPScorer with a model object needs its tokenizer (tokenizer=...)")
            self.name = getattr(clip.config, "name_or_path", "") or "clip"
        self.model = clip.eval().to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.image_size = int(clip.config.vision_config.image_size)
        self.max_length = int(clip.config.text_config.max_position_embeddings)

    def _pixels(self, images: Tensor) -> Tensor:
        x = to_float_images(images)
        h, w = x.shape[-2:]
        s = self.image_size / min(h, w)
        nh, nw = max(self.image_size, round(h * s)), max(self.image_size, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        top, left = (nh - self.image_size) // 2, (nw - self.image_size) // 2
        x = x[..., top:top + self.image_size, left:left + self.image_size]
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def scores(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """``(B, 3, H, W)`` float in ``[0, 1]`` (or uint8) and ``B`` prompts -> ``(B,)`` float32 CLIP scores
        ``100 * max(cos, 0)`` in ``[0, 100]``.

        Raises:
            SaceError: the number of prompts differs from the number of images.
        """
        prompts = [str(p) for p in prompts]
        if len(prompts) != int(images.shape[0] if images.ndim == 4 else 1):
            raise SaceError(f"CLIP score needs one prompt per image, got {len(prompts)} prompts for "
                            f"{images.shape[0]} images")
        out = []
        for i in range(0, len(prompts), self.batch_size):
            px = self._pixels(images[i:i + self.batch_size])
            tok = self.tokenizer(prompts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            img = _as_embeds(self.model.get_image_features(pixel_values=px))
            txt = _as_embeds(self.model.get_text_features(**tok))
            cos = F.cosine_similarity(img.float(), txt.float(), dim=-1)
            out.append((100.0 * cos.clamp(min=0)).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, images: Tensor, prompts: Sequence[str]) -> float:
        """Mean CLIP score over the set (a float in ``[0, 100]``)."""
        return float(self.scores(images, prompts).mean())


def _as_embeds(out) -> Tensor:
    # transformers >= 5 may return a model output object instead of the projected tensor
    if isinstance(out, Tensor):
        return out
    for k in ("image_embeds", "text_embeds", "pooler_output"):
        v = getattr(out, k, None)
        if isinstance(v, Tensor):
            return v
    raise SaceError(f"unexpected CLIP output {type(out).__name__}; update transformers")
