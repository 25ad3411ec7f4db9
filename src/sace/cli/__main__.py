"""``python -m sace.cli`` (also what torchrun runs: ``torchrun ... -m sace.cli generate ...``)."""

from . import main

if __name__ == "__main__":
    main()
