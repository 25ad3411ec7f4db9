"""--gate auto: the smallest prefix of scales whose late-injection residual B(k+1) is below the tolerance."""

from __future__ import annotations

import pytest

from sace.erasure.gate import choose_gate
from sace.errors import SaceError


def test_choose_gate_from_the_late_injection_curve():
    # README's sneaker curve B(k), k = 0..6: no prefix below 0.1 before the last scale -> all six scales
    assert choose_gate([1.0, 1.0, 0.93, 0.66, 0.40, 0.19, 0.02], 0.1) == 5
    # trouser-like: B(5) = 0 -> scales 0..4 suffice
    assert choose_gate([1.0, 1.0, 1.0, 0.97, 0.41, 0.0, 0.0], 0.1) == 4
    # a concept locked at scale 0 (the paper's axiom): B(1) ~ A(0) -> the scale-0 gate
    assert choose_gate([1.0, 0.02, 0.01, 0.0], 0.1) == 0
    assert choose_gate([1.0, 0.5, 0.3], 0.6) == 0 and choose_gate([1.0, 0.5, 0.3], 0.01) == 1
    with pytest.raises(SaceError):
        choose_gate([1.0], 0.1)


def test_auto_gate_needs_a_detector():
    from sace.concepts.spec import from_prompts
    from sace.erasure.sace import SACEConfig, SACETrainer
    from sace.models.registry import load_model

    m = load_model("fashion")
    spec = from_prompts("unicorn", ["a photo of a unicorn"], anchor="horse")
    with pytest.raises(SaceError, match="needs a detector"):
        SACETrainer(m, spec, SACEConfig(gate="auto", steps=1))
