"""Scale schedules: Infinity's templates, pixel budgets, token counts, scale ids."""

from __future__ import annotations

import pytest
import torch

from sace.errors import SaceError
from sace.models.infinity.schedules import (
    PIXEL_BUDGETS,
    RATIO_GRIDS,
    TEMPLATES,
    custom_schedule,
    infinity_schedule,
    nearest_template,
    schedule_for_size,
)


def test_token_counts_at_1to1():
    assert infinity_schedule(1.0, "0.06M").num_tokens == 521
    assert infinity_schedule(1.0, "0.25M").num_tokens == 2521
    assert infinity_schedule(1.0, "1M").num_tokens == 10521
    assert infinity_schedule(1.0, "1M").image_size == (1024, 1024)
    assert infinity_schedule(1.0, "0.06M").image_size == (256, 256)


def test_every_template_and_budget():
    assert len(TEMPLATES) == 15
    for ratio, grids in TEMPLATES.items():
        assert len(grids) == 13 and grids[0] == (1, 1)
        for pn, n in PIXEL_BUDGETS.items():
            s = infinity_schedule(ratio, pn)
            assert s.num_scales == n
            h, w = s.grids[-1]
            # the last grid of each budget has the template's aspect ratio (within 0.01, as the reference asserts)
            assert abs(h / w - ratio) < 0.01 * max(1, ratio)
            assert s.rope_grid == grids[-1]  # RoPE normalised to the 1M grid
            assert s.offsets[-1] == sum(a * b for a, b in s.grids)
            # transposed templates are exact transposes
    for ratio in RATIO_GRIDS:
        if ratio != 1.0:
            inv = int(1 / ratio * 1000) / 1000
            assert TEMPLATES[inv] == [(w, h) for h, w in RATIO_GRIDS[ratio]]


def test_two_to_one_at_1m_is_1440x720():
    s = infinity_schedule(2.0, "1M")
    assert s.grids[-1] == (90, 45) and s.image_size == (1440, 720)


def test_nearest_template():
    assert nearest_template(1.02) == 1.0
    assert nearest_template(1.3) == 1.333
    assert nearest_template(0.5) == 0.5
    assert nearest_template(10.0) == 3.0
    with pytest.raises(SaceError):
        nearest_template(0)
    assert schedule_for_size(512, 512).num_tokens == 2521
    assert schedule_for_size(1024, 1024).num_tokens == 10521


def test_scale_ids_and_truncation():
    s = infinity_schedule(1.0, "0.06M")
    ids = s.scale_ids()
    assert ids.shape == (521,) and ids[0] == 0 and ids[1:5].eq(1).all() and ids[-1] == 6
    assert torch.equal(torch.bincount(ids), torch.tensor([1, 4, 16, 36, 64, 144, 256]))
    t = s.truncated(3)
    assert t.num_tokens == 21 and t.rope_grid == s.rope_grid


def test_patchified_8b_schedule():
    s = infinity_schedule(1.0, "1M", patch=2, vae_stride=8)
    assert s.vae_grids[-1] == (128, 128) and s.image_size == (1024, 1024)
    assert s.num_tokens == 10521


def test_bad_inputs():
    with pytest.raises(SaceError, match="pixel budget"):
        infinity_schedule(1.0, "2M")
    with pytest.raises(SaceError, match="1x1"):
        custom_schedule([2, 4], vae_stride=4)
