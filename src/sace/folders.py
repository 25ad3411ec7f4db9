"""Output folders that know what they hold (manifest + lock; the artifact writers are in :mod:`sace.outputs`).

Every command that writes into ``--out`` opens it as an :class:`OutputFolder`:

* the path is checked before any long work (not a file, not under a file, writable);
* an exclusive lock (``fcntl.flock`` on ``DIR/.sace.lock``) keeps a second concurrent run out, with a clear
  error naming the holder's process id;
* ``DIR/sace_manifest.json`` records the command and the settings that produced the folder (model and adapter
  hashes, prompt digest, sampling settings, ...), written atomically. A re-run with the same settings resumes
  (e.g. ``generate`` keeps the finished PNGs); a re-run with other settings refuses and names the first
  differences, unless ``force`` (``--force``), which deletes the folder's previous results first;
* results found without a manifest (an older or foreign run) are never silently reused: the run refuses
  unless ``force``; a manifest of other settings over a folder without results (a run that failed before
  writing any) does not block the corrected command;
* the lock file is never followed when it is a symbolic link (refused), and temporary files of atomic writes
  left by a killed run are removed once the lock is held.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import SaceError
from .io import write_json
from .validation import output_dir, read_json_file

_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")   # sace.io.atomic_path's names (tempfile.mkstemp)
MANIFEST = "sace_manifest.json"
LOCK = ".sace.lock"
FORMAT = "sace.outputs.v1"


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences ``key: old -> new`` between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k not in old:
                out.append(f"{prefix}{k}: (none) -> {_short(new[k])}")
            elif k not in new:
                out.append(f"{prefix}{k}: {_short(old[k])} -> (none)")
            else:
                out += _diff(old[k], new[k], f"{prefix}{k}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {_short(old)} -> {_short(new)}"]
    return []


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


class OutputFolder:
    """An output folder opened for one run (use as a context manager, or :meth:`open` / :meth:`close`).

    Args:
        path: the folder (created when missing).
        command: the writing command (``generate``, ``issa``, ``erase``, ``evaluate``, ...).
        settings: JSON-serialisable description of everything that determines the results.
        owned: glob patterns of the result files this command writes (what ``force`` deletes, and what
            counts as "results of an unknown run" when there is no manifest).
        force: overwrite a folder holding results of other settings (its owned files are deleted first).
        what: the option name used in messages.
    Raises (on open):
        SaceError: bad path, another run holds the lock, or the folder holds results of other settings.
    """

    def __init__(self, path: str | os.PathLike, command: str, settings: dict, owned: Sequence[str] = (), *,
                 force: bool = False, what: str = "--out"):
        self.path = Path(path)
        self.command = command
        self.settings = settings
        self.owned = tuple(owned)
        self.force = force
        self.what = what
        self.resumed = False
        self._lock_fd: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def open(self) -> OutputFolder:
        output_dir(self.path, self.what)
        self._lock()
        try:
            self._remove_leftover_temps()
            self._check_and_claim()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> OutputFolder:
        return self.open()

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def complete(self, **summary) -> None:
        """Mark the folder complete (its results are all there), with an optional summary."""
        self._write("complete", summary)

    # -- internals ----------------------------------------------------------------------------------------
    def _lock(self) -> None:
        import fcntl

        p = self.path / LOCK
        # never follow a link: a .sace.lock planted as a symlink would make this run truncate its target
        if p.is_symlink():
            raise SaceError(f"{p} is a symbolic link, not a sace lock file; remove it (or choose another "
                            f"{self.what})")
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:   # made a link between the check above and the open
                raise SaceError(f"{p} is a symbolic link, not a sace lock file; remove it (or choose another "
                                f"{self.what})") from None
            raise SaceError(f"cannot create the lock file {p} ({e.strerror or e}); choose a writable "
                            f"{self.what}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SaceError(f"{p} is not a regular file (a sace lock file is); remove it (or choose another "
                            f"{self.what})")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 64, 0).decode().strip()
            os.close(fd)
            raise SaceError(f"another sace run{f' ({holder})' if holder else ''} is writing to {self.path}; wait "
                            f"for it to finish or choose another {self.what}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.command}".encode(), 0)
        self._lock_fd = fd

    def _remove_leftover_temps(self) -> None:
        """Delete the temporary files of atomic writes (:func:`sace.io.atomic_path`: ``.NAME.XXXXXXXX.tmp``,
        mkstemp's 8 random characters) that a killed run left between write and rename, in the folder and the
        two levels below it (``adapters/CONCEPT-METHOD/``); safe while this run holds the lock (no other sace
        run is writing here). Nothing else is touched, not even other hidden ``.tmp`` files."""
        for pat in (".*.tmp", "*/.*.tmp", "*/*/.*.tmp"):
            for p in self.path.glob(pat):
                if _TEMP.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)

    def _results(self) -> list[Path]:
        found: list[Path] = []
        for pat in self.owned:
            found += [p for p in self.path.glob(pat) if p.name not in (MANIFEST, LOCK)]
        return sorted(set(found))

    def _check_and_claim(self) -> None:
        mp = self.path / MANIFEST
        results = self._results()
        if mp.exists():
            old = read_json_file(mp, "output")
            same = (isinstance(old, dict) and old.get("command") == self.command
                    and old.get("settings") == _jsonable(self.settings))
            if same:
                self.resumed = bool(results)
            elif not results:
                pass   # e.g. a run that failed before writing anything: nothing to lose, nothing to mix
            elif not self.force:
                if not isinstance(old, dict) or old.get("command") != self.command:
                    was = old.get("command") if isinstance(old, dict) else "?"
                    raise SaceError(f"{self.path} holds the results of `sace {was}`, not `sace {self.command}`; "
                                    f"choose another {self.what} or pass --force to overwrite them")
                diff = _diff(old.get("settings"), _jsonable(self.settings))
                raise SaceError(f"{self.path} holds results made with other settings ({'; '.join(diff[:3])}"
                                f"{'; ...' if len(diff) > 3 else ''}); choose another {self.what} or pass --force "
                                f"to overwrite them")
            else:
                self._clear(results)
        elif results:
            if not self.force:
                raise SaceError(f"{self.path} already holds {len(results)} result file(s) (e.g. {results[0].name}) "
                                f"that no manifest describes; choose another {self.what} or pass --force to "
                                f"overwrite them")
            self._clear(results)
        self._write("running", {})

    def _clear(self, results: list[Path]) -> None:
        for p in results:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def _write(self, status: str, summary: dict) -> None:
        write_json(self.path / MANIFEST, {"format": FORMAT, "command": self.command, "status": status,
                                          "settings": self.settings, **({"summary": summary} if summary else {})})


def _jsonable(obj: Any) -> Any:
    """The value as it reads back from JSON (tuples -> lists, non-finite floats -> None, paths -> str)."""
    import json
    import math

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, Path):
            return str(o)
        return o

    return json.loads(json.dumps(clean(obj), default=str))


@contextlib.contextmanager
def open_output(path, command: str, settings: dict, owned: Sequence[str] = (), *, force: bool = False,
                what: str = "--out") -> Iterator[OutputFolder]:
    """``with open_output(...) as folder:`` -- :class:`OutputFolder` opened and closed around a block."""
    f = OutputFolder(path, command, settings, owned, force=force, what=what).open()
    try:
        yield f
    finally:
        f.close()


# -- Ctrl-C -----------------------------------------------------------------------------------------------
class Interrupted(Exception):
    """A Ctrl-C that knows what was saved and how to resume (the CLI prints ``note`` and exits 130).

    Deliberately not a KeyboardInterrupt: typer handles those itself (exit 130 without a word)."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = note


@contextlib.contextmanager
def on_interrupt(note) -> Iterator[None]:
    """Turn a KeyboardInterrupt inside the block into :class:`Interrupted` with ``note()`` (a callable, so
    that it describes the state at the moment of the interrupt)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(note()) from None
