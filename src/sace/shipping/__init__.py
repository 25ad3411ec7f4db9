"""Shipping an erased model: ``sace export`` (a merged or gated model folder with its model card,
:mod:`.export`, :mod:`.merge`, :mod:`.card`) and adapters/models from the Hugging Face hub (:mod:`.hub`).
The browser demo ``sace app`` lives in :mod:`sace.app` (it imports gradio, so it is imported only when run)."""
