"""The one exception type users see: a clear message that names the problem and the fix."""

from __future__ import annotations


class SaceError(Exception):
    """A user-facing error (bad input, missing file, wrong checkpoint, ...).

    The CLI prints ``str(err)`` on one line and exits with status 2; library callers can catch it.
    """


class CheckpointError(SaceError):
    """A checkpoint file does not match the model (missing/unexpected keys, wrong shapes, corrupt file)."""
