"""Screenshot a (self-contained) HTML report with headless Chromium.

    python scripts/screenshot.py runs/x/report.html runs/x/report.png --width 1280 --height 2000
"""

from __future__ import annotations

import argparse
import sys

from sace.errors import SaceError
from sace.reporting import screenshot


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", help="the HTML file to render")
    ap.add_argument("png", help="where to write the PNG screenshot")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for Chromium")
    args = ap.parse_args(argv)
    try:
        out = screenshot(args.html, args.png, width=args.width, height=args.height, timeout=args.timeout)
    except SaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
