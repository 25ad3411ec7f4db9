"""Shared fixtures: the tiny Infinity of the parity fixtures, loaded strictly through the registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "infinity_tiny"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_model():
    from sace.models.registry import load_model

    # the registry gives the fixture a word-hash text encoder; the core tests pass conditions directly
    return load_model("infinity-tiny-fixture", load_text_encoder=False)


@pytest.fixture(scope="session")
def golden():
    from safetensors.torch import load_file

    return {name: load_file(str(FIXTURES / f"{name}.safetensors"))
            for name in ("golden_fp32", "golden_bf16_cross_attn")}
