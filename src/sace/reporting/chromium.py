"""A headless-Chromium screenshot of a report page (for README figures and visual checks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import SaceError
from ..io import atomic_path

__all__ = ["find_chromium", "screenshot"]


def find_chromium() -> str | None:
    """The path of a Chromium/Chrome executable: ``$SACE_CHROMIUM``, then ``chromium``,
    ``chromium-browser``, ``google-chrome`` on PATH, then ``/usr/bin/chromium``; ``None`` if none."""
    env = os.environ.get("SACE_CHROMIUM")
    if env and Path(env).is_file() and os.access(env, os.X_OK):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium"):
        if Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return None


def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280, height: int = 2000,
               timeout: float = 90.0) -> Path:
    """Render a local HTML file with headless Chromium and save a ``width`` x ``height`` PNG (atomically).

    Chromium runs with a fresh temporary profile, no GPU, no sandbox, and no background networking;
    the page should be self-contained (as :meth:`Report.write` makes it).

    Returns:
        ``png_path`` as a :class:`~pathlib.Path`.
    Raises:
        SaceError: Chromium is not installed (hint: ``apt-get install chromium``, or set ``SACE_CHROMIUM``),
            the HTML file does not exist, Chromium fails or times out.
    """
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise SaceError(f"screenshot: HTML file not found: {html_path}")
    exe = find_chromium()
    if exe is None:
        raise SaceError("screenshot needs Chromium, which was not found (install it with "
                        "`apt-get install chromium`, or point SACE_CHROMIUM at a Chrome/Chromium binary)")
    png_path = Path(png_path)
    with tempfile.TemporaryDirectory(prefix="sace-chromium-") as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={shot}",
               f"--window-size={int(width)},{int(height)}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                  text=True, errors="replace")
        except subprocess.TimeoutExpired as e:
            raise SaceError(f"screenshot: Chromium did not finish within {timeout:.0f} s") from e
        except OSError as e:
            raise SaceError(f"screenshot: cannot run {exe} ({e})") from e
        if not shot.is_file() or shot.stat().st_size == 0:
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
            raise SaceError(f"screenshot: Chromium (exit {proc.returncode}) wrote no image; its last messages:\n"
                            f"{tail}")
        with atomic_path(png_path) as out:
            shutil.copyfile(shot, out)
    return png_path
