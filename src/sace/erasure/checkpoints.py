"""Training checkpoints that say what they are: the concept, the configuration and the base-model hash are
stored next to the weights, and ``--resume`` refuses a checkpoint made for another concept or with other
settings (it would silently continue the wrong weights). Writes go through :func:`sace.io.save_torch`
(memory, then temp file + fsync + rename), so a full disk or a crash keeps the previous checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SaceError
from ..io import save_torch, torch_load_weights

#: config fields that may change on resume (more steps; another checkpoint interval)
RESUMABLE_FIELDS = ("steps", "checkpoint_every")


def write_checkpoint(path: Path, state: dict, *, concept: dict, config: dict, base_hash: str) -> None:
    """Write a checkpoint with its provenance. Raises SaceError (disk full / not writable) with the previous
    checkpoint left in place."""
    try:
        save_torch(path, {**state, "concept": concept, "config": config, "base_model_hash": base_hash})
    except SaceError as e:
        raise SaceError(f"{e}; training stopped at step {state.get('step')}, resume with --resume once there "
                        f"is space") from None


def read_checkpoint(path: Path, *, concept: dict, config: dict, base_hash: str) -> dict:
    """Load a checkpoint and check that it continues *this* run.

    Raises:
        SaceError: another concept, other settings (names the first differing fields), other base weights,
            a checkpoint beyond ``config['steps']``, or one without a record of its settings.
    """
    st = torch_load_weights(path)
    if not isinstance(st, dict) or "adapter" not in st or "step" not in st:
        raise SaceError(f"{path} is not a sace training checkpoint; delete it or start without --resume")
    if "config" not in st or "concept" not in st:
        raise SaceError(f"{path} records neither its concept nor its settings (made by an older sace); start "
                        f"without --resume or choose another --out")
    old_c, new_c = st["concept"], concept
    if old_c.get("name") != new_c.get("name"):
        raise SaceError(f"{path} was trained to erase {old_c.get('name')!r}, not {new_c.get('name')!r}; use "
                        f"another --out or resume with --concept {old_c.get('name')}")
    if old_c != new_c:
        diff = [k for k in sorted(set(old_c) | set(new_c)) if old_c.get(k) != new_c.get(k)]
        raise SaceError(f"{path} was trained on other {new_c.get('name')!r} prompts ({', '.join(diff)} differ); "
                        f"resume with the same concept definition or start without --resume")
    diff = [f"{k} {st['config'].get(k)!r} -> {config.get(k)!r}" for k in sorted(set(st["config"]) | set(config))
            if k not in RESUMABLE_FIELDS and st["config"].get(k) != config.get(k)]
    if diff:
        raise SaceError(f"{path} was made with other settings ({'; '.join(diff[:4])}); resume with the "
                        f"checkpoint's settings or start without --resume (or another --out)")
    if st.get("base_model_hash") and st["base_model_hash"] != base_hash:
        raise SaceError(f"{path} was trained on other base weights (hash {st['base_model_hash']} vs {base_hash}); "
                        f"resume on the same model and adapters")
    if int(st["step"]) > int(config.get("steps", 0)):
        raise SaceError(f"{path} is at step {st['step']}, beyond --steps {config.get('steps')}; give --steps >= "
                        f"{st['step']}")
    return st
