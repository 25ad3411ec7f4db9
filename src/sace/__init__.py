"""sace: scale-aware concept erasure for visual autoregressive (next-scale) text-to-image models."""

from .errors import CheckpointError, SaceError

__version__ = "0.1.0"

__all__ = ["SaceError", "CheckpointError", "__version__"]
