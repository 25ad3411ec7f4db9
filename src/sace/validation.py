"""Checks at the boundary: every numeric option, device name and JSON file is validated where it enters
(CLI or Python API) and turned into a one-line :class:`~sace.errors.SaceError` naming the option and the
fix, instead of a traceback deep inside sampling or training (or, worse, a silently wrong result).

The JSON files (``adapter.json``, ``model.json``) are read through pydantic models: a missing section, an
unknown key or a value of the wrong JSON type is reported as ``FILE: SECTION.KEY: problem``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import SaceError

#: torch.Generator.manual_seed accepts 0 .. 2**64 - 1 (and negatives, which wrap); seeds are kept unsigned
SEED_MAX = 2**64 - 1


# -- numbers ----------------------------------------------------------------------------------------------
def finite(name: str, value: float | None, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float | None:
    """``value`` as a float, checked finite and inside the given bounds (``None`` passes through).

    Raises:
        SaceError: ``"{name} must be a finite number ..., got {value}"``.
    """
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SaceError(f"{name} must be a number, got {value!r}") from None
    rng = _range_text(lo, hi, lo_open, hi_open)
    if not math.isfinite(v):
        raise SaceError(f"{name} must be a finite number{rng}, got {value}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise SaceError(f"{name} must be{rng}, got {value}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise SaceError(f"{name} must be{rng}, got {value}")
    return v


def _range_text(lo, hi, lo_open, hi_open) -> str:
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def integer(name: str, value: int | None, *, lo: int | None = None, hi: int | None = None) -> int | None:
    """``value`` as an int (bools and non-integral floats rejected) inside ``[lo, hi]``; ``None`` passes.

    Raises:
        SaceError: ``"{name} must be an integer >= lo, got value"``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            isinstance(value, float) and value.is_integer()):
        raise SaceError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if lo is not None and v < lo or hi is not None and v > hi:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" if lo is not None else f"<= {hi}"
        raise SaceError(f"{name} must be an integer {rng}, got {value}")
    return v


#: the largest count any option accepts (``--n``, ``--seeds``, ``--n-per-class``, ``--eval-seeds``,
#: ``--search-seeds``, ``--n-prompts``, ``--check-images``, ``--images``, ...): checked before any list is built
#: or any model loaded, so a typo such as ``--n 1e12`` is one line instead of a MemoryError after swapping.
MAX_COUNT = 10_000


def count(name: str, value: int | None, lo: int = 1) -> int | None:
    """A count option in ``[lo, MAX_COUNT]`` (:func:`integer`)."""
    return integer(name, value, lo=lo, hi=MAX_COUNT)


def path_name(name: str, cap: int = 80) -> str:
    """``name`` made safe as one path component of a default output folder (``out/erase-NAME``): path
    separators, ``..`` and characters other than letters, digits, ``-``, ``_``, ``.`` become ``_``; at most
    ``cap`` characters; never empty, never ``.`` or ``..``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "concept"
    return s[:cap]


def seed(name: str, value: int) -> int:
    """A generator seed: an integer in ``[0, 2**64 - 1]`` (what ``torch.Generator.manual_seed`` keeps)."""
    return integer(name, value, lo=0, hi=SEED_MAX)


def seeds(values, where: str = "seed") -> list[int]:
    """Every seed of a list checked with :func:`seed` (the message names the first bad position)."""
    out = []
    for i, s in enumerate(values):
        try:
            out.append(seed(where, s))
        except SaceError as e:
            raise SaceError(f"{e} (item {i}); seeds must lie in [0, 2**64 - 1]") from None
    return out


def sampling(guidance=None, temperature=None, top_k=None, top_p=None) -> None:
    """The sampling settings (``None`` = the model's default): guidance w finite, temperature tau > 0,
    top-k >= 0 (0 = off), top-p in [0, 1] (0 = off, otherwise the nucleus mass in (0, 1]).

    Raises:
        SaceError: the first bad value, named by its option.
    """
    if guidance is not None and not isinstance(guidance, (int, float)):
        for w in guidance:
            finite("--guidance", w)
    else:
        finite("--guidance", guidance)
    if temperature is not None and not isinstance(temperature, (int, float)):
        for t in temperature:
            finite("--temperature", t, lo=0, lo_open=True)
    else:
        finite("--temperature", temperature, lo=0, lo_open=True)
    integer("--top-k", top_k, lo=0)
    if top_p is not None:
        finite("--top-p", top_p)
        if not 0 <= float(top_p) <= 1:
            raise SaceError(f"--top-p must be in (0, 1] (or 0 = off), got {top_p}")


def negative_prompt(text: str | None) -> str | None:
    """A negative prompt is either absent or non-empty (an empty one would silently be ignored)."""
    if text is not None and not text.strip():
        raise SaceError("--negative-prompt is empty; give a prompt or leave the option out")
    return text


def batch_size(value: int, name: str = "--batch-size") -> int:
    return integer(name, value, lo=1)


# -- devices ----------------------------------------------------------------------------------------------
def device(name: str | None) -> str:
    """Resolve and check a device name: ``""``/``None`` -> cuda when available else cpu; ``cpu``, ``cuda``,
    ``cuda:N`` (N < the number of GPUs) and ``mps`` (when available).

    Raises:
        SaceError: an unknown device name, or a CUDA/MPS device on a machine without one.
    """
    import torch

    if not name:
        return "cuda" if torch.cuda.is_available() else "cpu"
    s = str(name).strip().lower()
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", s)
    if not m:
        raise SaceError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    kind, idx = m.group(1), m.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise SaceError(f"--device {name}: CUDA is not available on this machine (torch "
                            f"{torch.__version__}); use --device cpu")
        n = torch.cuda.device_count()
        if idx is not None and int(idx) >= n:
            raise SaceError(f"--device {name}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SaceError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return s


# -- output paths -----------------------------------------------------------------------------------------
def output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check, before any long work, that ``path`` can be a writable output folder: not a file, not under
    a file, and writable (created when missing).

    Raises:
        SaceError: ``--out X is a file`` / ``is under the file Y`` / ``is not writable``.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SaceError(f"{what} {p} is a file, not a folder; choose another path")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SaceError(f"{what} {p} is under the file {parent}, not a folder; choose another path")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SaceError(f"{what} {p} cannot be created ({e.strerror or e}); choose a writable folder") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise SaceError(f"{what} {p} is not writable; choose a writable folder or fix its permissions")
    return p


# -- JSON files -------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class AdapterConfigJSON(_Strict):
    name: str
    modules: list[str]
    rank: int
    alpha: float
    gate: str
    kind: str = "lora"
    isolation: str = "strict"


class AdapterJSON(_Open):
    """``adapter.json``: the format tag and the adapter's config are required and typed; the training
    metadata next to them is free-form (but typed where sace reads it)."""

    format: str
    config: AdapterConfigJSON
    base_model: str | None = None
    base_model_hash: str | None = None
    weights_hashes: dict[str, str] | None = None
    modules: list[str] | None = None
    num_params: int | None = None


class ScheduleJSON(_Strict):
    grids: list[list[int]]
    vae_stride: int = 16
    patch: int = 1
    rope_grid: list[int] | None = None
    name: str = ""


class TransformerJSON(_Strict):
    depth: int
    embed_dim: int
    num_heads: int
    mlp_ratio: float = 4.0
    text_channels: int
    text_maxlen: int = 512
    codebook_dim: int
    block_chunks: int = 1
    norm_eps: float = 1e-6
    num_lvl_embed: int = 15
    cond_drop_rate: float = 0.1


class VAEJSON(_Strict):
    codebook_dim: int
    base_ch: int = 128
    num_res_blocks: int = 2
    encoder_ch_mult: list[int]
    decoder_ch_mult: list[int]
    patch_size: int = 16
    in_channels: int = 3


class TextEncoderJSON(_Strict):
    kind: str
    path: str | None = None


class SamplingDefaultsJSON(_Strict):
    guidance: float | list[float] | None = None
    temperature: float | list[float] | None = None
    top_k: int | None = None
    top_p: float | None = None


class DefaultsJSON(_Strict):
    """``defaults``: ``sampling`` plus per-method tables (the older flat layout, sampling keys beside the
    method tables, is accepted too; :func:`sace.models.base.split_defaults`)."""

    sampling: SamplingDefaultsJSON | None = None
    guidance: float | list[float] | None = None
    temperature: float | list[float] | None = None
    top_k: int | None = None
    top_p: float | None = None
    sace: dict[str, Any] | None = None
    rsace: dict[str, Any] | None = None
    svare: dict[str, Any] | None = None
    esd: dict[str, Any] | None = None
    anchors: dict[str, str] | None = None
    """Per-concept default anchors of this model (``sace.domains.default_anchor``)."""


class ModelJSON(_Strict):
    """``model.json`` of a sace model folder (what :func:`sace.models.registry.save_model` writes): every
    section typed, unknown keys rejected (``recipe`` and ``train_times`` are the recipes' provenance)."""

    name: str | None = None
    description: str = ""
    family: str = "infinity"
    transformer: TransformerJSON
    vae: VAEJSON
    schedule: ScheduleJSON
    text_encoder: TextEncoderJSON = TextEncoderJSON(kind="none")
    defaults: DefaultsJSON = DefaultsJSON()
    domain: str | None = None
    train_interp: str = "trilinear"
    sample_interp: str = "trilinear"
    hashes: dict[str, str] | None = None
    trained_schedules: list[ScheduleJSON] | None = None
    recipe: dict[str, Any] | None = None
    train_times: dict[str, Any] | None = None
    merged_from: dict[str, Any] | None = None   # ``sace export``: the base model and adapter folded into it


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "missing":
        return f"{loc}: missing (required)"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    return f"{loc}: {err['msg'].lower()} (got {json.dumps(err.get('input'), default=str)[:60]})"


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file; missing / unreadable / invalid JSON -> SaceError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SaceError(f"{path} not found (not a sace {what} folder)") from None
    except UnicodeDecodeError:
        raise SaceError(f"{path} is not UTF-8 text; re-create the {what}") from None
    except json.JSONDecodeError as e:
        raise SaceError(f"{path} is not valid JSON ({e}); re-create the {what}") from None
    except OSError as e:
        raise SaceError(f"cannot read {path} ({e.strerror or e})") from None


def parse(model_cls: type[BaseModel], data: Any, path: Path | str) -> BaseModel:
    """Validate ``data`` against ``model_cls``; the first problem becomes ``path: loc: problem``."""
    if not isinstance(data, dict):
        raise SaceError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        return model_cls.model_validate(data)
    except ValidationError as e:
        raise SaceError(f"{path}: {_first_error(e)}; fix the file or re-create it") from None


def check_adapter_json(meta: Any, path: Path | str) -> AdapterJSON:
    """Validate a parsed ``adapter.json`` (see :class:`AdapterJSON`)."""
    return parse(AdapterJSON, meta, path)


def check_model_json(meta: Any, path: Path | str) -> ModelJSON:
    """Validate a parsed ``model.json`` (see :class:`ModelJSON`)."""
    return parse(ModelJSON, meta, path)


# -- training configurations ------------------------------------------------------------------------------
#: field -> (CLI option, kind, lower bound, lower bound open); shared by SACE, S-VARE and ESD configs
_TRAIN_FIELDS = {
    "steps": ("--steps", "int", 1, False),
    "lr": ("--lr", "float", 0.0, True),
    "rank": ("--rank", "int", 1, False),
    "alpha": ("--alpha", "float", 0.0, True),
    "batch_size": ("--batch-size", "int", 0, False),
    "checkpoint_every": ("--checkpoint-every", "int", 1, False),
    "lambda_h": ("--lambda-h", "float", 0.0, False),
    "lambda_pre": ("--lambda-pre", "float", 0.0, False),
    "mu": ("--mu", "float", 0.0, False),
    "k_max": ("k_max", "int", 0, False),
    "hard_samples": ("hard_samples", "int", 1, False),
    "preserve_samples": ("preserve_samples", "int", 1, False),
    "grad_clip": ("grad_clip", "float", 0.0, True),
    "weight_decay": ("weight_decay", "float", 0.0, False),
    "eta": ("eta", "float", 0.0, False),
    "kl_weight": ("kl_weight", "float", 0.0, False),
    "teacher_temperature": ("teacher_temperature", "float", 0.0, True),
    "temperature": ("--temperature", "float", 0.0, True),
}


def check_train_config(cfg) -> None:
    """Validate a training config dataclass (SACE / S-VARE / ESD): every numeric field finite and in range,
    the seed in 64 bits and the guidance finite (the gate's scales are checked against the model by
    :func:`sace.adapters.check_gate`).

    Raises:
        SaceError: the first bad field, named by its CLI option.
    """
    for f, (opt, kind, lo, lo_open) in _TRAIN_FIELDS.items():
        v = getattr(cfg, f, None)
        if v is None:
            continue
        if kind == "int":
            integer(opt, v, lo=lo)
        else:
            finite(opt, v, lo=lo, lo_open=lo_open)
    if getattr(cfg, "guidance", None) is not None:
        finite("--guidance", cfg.guidance)
    seed("--seed", getattr(cfg, "seed", 0))


def check_eval_request(req) -> None:
    """The numbers of a :class:`sace.evaluation.runner.EvalRequest` (``sace evaluate``'s options).

    Raises:
        SaceError: the first bad one, named by its CLI option.
    """
    for opt, val, lo in (("--limit", req.limit, 1), ("--sace-steps", req.sace_steps, 1),
                         ("--baseline-steps", req.baseline_steps, 1)):
        integer(opt, val, lo=lo)
    for opt, val, lo in (("--n-per-class", req.n_per_class, 1), ("--n-heldout", req.n_heldout, 0),
                         ("--inception-images", req.inception_images, 0)):
        count(opt, val, lo=lo)
    batch_size(req.batch_size)
    seed("--seed", req.seed)
    finite("--nudenet-threshold", req.nudenet_threshold, lo=0, hi=1)
