"""Fixtures of the attack tests: the embedded model and the sneaker concept (module-scoped)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model
    return load_model("fashion")


@pytest.fixture(scope="module")
def sneaker():
    from sace.domains.fashion.concepts import fashion_concept
    return fashion_concept("sneaker", "sandal")
