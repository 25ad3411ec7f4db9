"""``python -m sace``: the same entry point as the ``sace`` command."""

from .cli import main

main()
