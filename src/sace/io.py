"""Safe file output: every file is written to a temporary name beside its target and renamed into
place, so a crash or a full disk never leaves a half-written result behind; weights are read only with
``safetensors`` or ``torch.load(weights_only=True)``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, SaceError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    Raises:
        SaceError: the disk is full or the folder is not writable (the target is left untouched).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _write_error(target, e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give results the usual permissions (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        _fsync(tmp_path)            # the bytes are on disk before the rename makes them the result
        os.replace(tmp_path, target)
        _fsync(target.parent)       # ... and the rename itself survives a crash
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise _write_error(target, e) from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _write_error(target: Path, e: OSError) -> SaceError:
    if e.errno == errno.ENOSPC:
        return SaceError(f"disk full (ENOSPC) while writing {target}; free some space and run again "
                         f"(the previous {target.name}, if any, was kept)")
    return SaceError(f"cannot write {target}: {e.strerror or e}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):   # folders cannot be fsync'ed on every filesystem
            raise
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename): the previous file stays intact
    until the new one is complete.

    Raises:
        SaceError: ``disk full while writing PATH ...`` (ENOSPC) or ``cannot write PATH``.
    """
    view = memoryview(data)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` into memory, then :func:`write_bytes`: a full disk is reported as such (torch's own
    file writer reports it as "unexpected pos" or "file write failed") and never clobbers the last file."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (non-finite floats become ``null``)."""

    def clean(o):
        if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, torch.Tensor):
            return clean(o.tolist())
        if isinstance(o, Path):
            return str(o)
        return o

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean(obj), indent=2, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str] | None = None) -> None:
    """Save tensors with safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    nbytes = sum(v.numel() * v.element_size() for v in tensors.values())
    if nbytes < 1 << 30:   # small files (adapters): serialise in memory so a full disk is an OSError we report
        from safetensors.torch import save

        write_bytes(path, save(tensors, metadata=metadata))
        return
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except Exception as e:  # noqa: BLE001 - safetensors reports I/O failures as its own errors
            import shutil

            if shutil.disk_usage(tmp.parent).free < nbytes:
                raise OSError(errno.ENOSPC, "No space left on device") from e
            raise


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupt file raises CheckpointError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-create or re-download it") from e


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (``{}`` when it has none).

    Raises:
        CheckpointError: a missing or unreadable file.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-create or re-download it") from None


def torch_load_weights(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure means the file cannot be used
            raise CheckpointError(_torch_load_error(path, e)) from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(_torch_load_error(path, e)) from None


def _torch_load_error(path: Path, e: Exception) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused (torch's own message spans a page)."""
    text = str(e)
    if "Weights only load failed" in text or "Unsupported global" in text:
        return (f"{path} holds pickled Python objects, not only tensors: refused by the weights-only load (sace never "
                f"runs a pickle); convert it to .safetensors from a trusted copy")
    first = next((x.strip() for x in text.splitlines() if x.strip()), type(e).__name__)
    return f"{path} cannot be read as a weights-only torch file ({first[:200]}); re-create or re-download it"
