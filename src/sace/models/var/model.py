"""``VARModel``: a class-conditional VAR (FoundationVision/VAR) behind the scale-wise model interface of
``shared/docs/DESIGN.md`` (:class:`sace.models.base.ScaleWiseModel`).

* Conditions: a prompt is a class label or name (:class:`~sace.models.var.classes.ClassVocabulary`); a
  :class:`Condition` row holds its label as ``tokens[i, 0, 0]`` (float, exact below 2**24) with one real token,
  and the null condition is the null class ``num_classes``. A continuous condition holds class embeddings
  ``(B, 1, C)`` instead (:meth:`VARModel.continuous_condition`; what the attacks optimise).
  Swapping the condition at scale k (ISSA) swaps the class of the AdaLN and head conditions of scales >= k;
  the SOS comes from the scale-0 condition.
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
from torch import Tensor

from ...errors import SaceError
from ..base import Condition, Schedule, TokenPyramid, per_scale_values, split_defaults
from ..blocks import Segment
from ..common import SamplerState, ScaleWiseBase
from ..text import check_prompts
from ..tokens import IndexTokens
from .classes import ClassVocabulary
from .groups import CONDITION_STREAM, DEFAULT_MODULES, MODULE_GROUPS
from .transformer import VARTransformer
from .vqvae import VQVAE


def guidance_ramp(cfg: float, num_scales: int) -> list[float]:
    """VAR's guidance schedule as per-scale weights ``w_k = 1 + cfg * k / (K - 1)`` (no guidance at scale 0;
    ``shared/docs/reference-models.md`` §3 "Sampling")."""
    denom = max(num_scales - 1, 1)
    return [1.0 + cfg * k / denom for k in range(num_scales)]


class VARModel(ScaleWiseBase):
    """A class-conditional next-scale model with VAR's architecture.

    Args:
        transformer: :class:`VARTransformer`. vae: :class:`VQVAE` with the same ``patch_nums``, vocabulary
            and code width.
        classes: the class vocabulary (``len == transformer.cfg.num_classes``).
        name: registry name. defaults: sampling settings (``guidance`` may be a per-scale list).
    Raises:
        SaceError: transformer and VQVAE disagree.

    Shared wrapper logic (per-scale conditions, teacher forcing with guidance, two-stream scale 0, sampling
    bookkeeping) is :class:`~sace.models.common.ScaleWiseBase`'s; this class supplies its hooks.
    """

    family = "var"
    #: prompts are classes: a caption that names no class (a concept's "entangled" context) has no meaning
    class_conditional = True
    module_groups = MODULE_GROUPS
    text_stream_groups = CONDITION_STREAM
    #: the next input holds the conditional rows only; both sides get them (reference: ``repeat(2, 1, 1)``)
    next_input_both_sides = False

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

    def is_embedding(self, cond: Condition) -> bool:
        """Whether ``cond`` holds continuous class embeddings ``(B, 1, C)`` (:meth:`continuous_condition`) rather
        than class labels ``(B, 1, 1)``."""
        return cond.tokens.shape[1] == 1 and cond.channels == self.transformer.cfg.embed_dim

    def labels(self, cond: Condition) -> Tensor:
        """``(B,)`` int64 class labels of a condition made by this model. Raises SaceError otherwise."""
        if cond.channels != 1 or cond.tokens.shape[1] != 1:
            raise SaceError(f"a {self.family} condition holds one class label per row (tokens (B, 1, 1)); got "
                            f"{tuple(cond.tokens.shape)} -- encode prompts with this model")
        return cond.tokens[:, 0, 0].round().long()

    def continuous_condition(self, cond: Condition) -> Condition:
        """The class embedding rows of ``cond`` as a continuous condition: tokens ``(B, 1, C)`` float (the rows of
        ``class_emb`` for its labels, the null class's row for null rows; ``C = embed_dim``), mask ``(B, 1)``.
        :meth:`prepare <sace.models.var.transformer.VARTransformer.prepare>` takes it in place of the labels and
        gives bit-identical results for unchanged rows; an attack optimises these rows (a ball around the
        class embedding). A condition that already holds embeddings is returned as it is.

        Raises:
            SaceError: ``cond`` is neither labels nor embeddings of this model.
        """
        if self.is_embedding(cond):
            return cond
        with torch.no_grad():
            emb = self.transformer.class_emb(self.transformer.check_labels(self.labels(cond)))
        return Condition(emb.detach().unsqueeze(1), cond.mask.to(emb.device), cond.prompts, cond.is_null)

    def _rows(self, cond: Condition) -> Tensor:
        """``(B,)`` labels, or ``(B, C)`` class embeddings of a continuous condition."""
        if self.is_embedding(cond):
            return cond.tokens[:, 0]
        return self.labels(cond)

    def _prepare_input(self, cond: Condition, uncond: Condition | None) -> Tensor:
        """The class labels ``(B,)`` (or ``(2B,)``: cond then uncond) of the rows, or their class embeddings
        ``(B or 2B, C)`` when either side is continuous (labels are then looked up, so both sides concatenate)."""
        if uncond is None:
            return self._rows(cond)
        if not (self.is_embedding(cond) or self.is_embedding(uncond)):
            return torch.cat([self.labels(cond), self.labels(uncond)])
        c, u = self.continuous_condition(cond).tokens[:, 0], self.continuous_condition(uncond).tokens[:, 0]
        return torch.cat([c, u.to(c)])

    def _null_conditions(self, conds: list[Condition], n: int) -> list[Condition]:
        """The null class, one object for every scale."""
        null = self.null_condition(conds[0])
        return [null] * n

    def _guidance_weights(self, guidance, n: int) -> tuple[list[float], bool]:
        """``None``: unguided; otherwise :meth:`guidance_weights` -- and any guidance argument brings the
        null-class rows, also where the ramp is 1 (scale 0): callers that ask for guided logits get the
        unconditional parts too (SACE's scale-0 teacher reads them)."""
        if guidance is None:
            return [1.0] * n, False
        return self.guidance_weights(guidance, n), True

    def _teacher_forced_pass(self, states, tf_inputs: Tensor | None, schedule: Schedule, n: int) -> Tensor:
        """:meth:`VARTransformer.forward_teacher_forced` (the reference ``VAR.forward`` without label dropout;
        one fixed schedule): logits ``(B', L_n, V)`` float32."""
        return self.transformer.forward_teacher_forced(states, tf_inputs, n)

    def _step_input(self, st: SamplerState, k: int) -> tuple[Tensor, Tensor, None]:
        """Scale ``k``'s embedded input ``(B', pn_k**2, C)`` and scale ids; both halves get the cond half's
        next-scale tokens (reference: ``repeat(2, 1, 1)``)."""
        tr = self.transformer
        offs = st.schedule.offsets
        sid = tr.lvl_1L[0, offs[k]:offs[k + 1]]
        x = tr.embed_scale(k, st.next_input, st.states[0])
        if k > 0 and st.guided:
            x = torch.cat([x, x])
        return x, sid, None

    def _run_cached(self, x: Tensor, segments: list[Segment], scale_ids: Tensor, pos: None,
                    kv_cache: list) -> Tensor:
        return self.transformer.run_blocks(x, segments, scale_ids, None, kv_cache)

    # -- tokenizer ---------------------------------------------------------------------------------------
    def _resolve_schedule(self, schedule: Schedule | None) -> Schedule:
        """The model's one schedule. Raises SaceError for any other."""
        if schedule is not None and schedule.grids != self.schedule.grids:
            raise SaceError(f"VAR models have one fixed schedule {self.schedule.grids}; got {schedule.grids}")
        return self.schedule

    def tokenize(self, images: Tensor, schedule: Schedule | None = None, bit_flip: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[TokenPyramid, Tensor]:
        """Images ``(B, 3, S, S)`` in [-1, 1] -> (index pyramid ``(B, pn_k, pn_k)``, teacher-forcing inputs
        ``(B, L-1, Cvae)``). ``bit_flip`` must be 0 (bitwise self-correction is Infinity's)."""
        sch = self._resolve_schedule(schedule)
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
        self._resolve_schedule(schedule)
        return self.vae.quantize.next_inputs(self._flat(pyramid, min(pyramid.num_scales, self.schedule.num_scales)))

    def decode(self, pyramid: TokenPyramid, schedule: Schedule | None = None) -> Tensor:
        """All K scales of indices -> images ``(B, 3, S, S)`` in [0, 1]."""
        sch = self._resolve_schedule(schedule)
        if pyramid.num_scales != sch.num_scales:
            raise SaceError(f"pyramid has {pyramid.num_scales} scales, the schedule {sch.num_scales}")
        return (self.vae.indices_to_images(self._flat(pyramid, sch.num_scales)) + 1) / 2

    # -- sampling primitives (the loop is sace.sampling.sample) ------------------------------------------
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

    def finish_sampling(self, st: SamplerState) -> Tensor:
        """Decode the summed codes: images ``(B, 3, S, S)`` in [0, 1] (``fhat_to_img(...).add_(1).mul_(0.5)``)."""
        return (self.vae.decode_fhat(st.fhat) + 1) / 2
