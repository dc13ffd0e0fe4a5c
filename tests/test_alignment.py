"""Attention alignment against analytic truth (a disc) and scikit-image's morphology (an irregular outline)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.morphology import dilation, disk, erosion

from runtime.explain.alignment import attention_alignment, border_band


def _disc(radius: float, side: int = 400) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return ((x - side / 2) ** 2 + (y - side / 2) ** 2 <= radius ** 2).astype(np.uint8)


def test_uniform_attention_shares_are_areas():
    mask = _disc(100)
    found = attention_alignment(np.ones(mask.shape, np.float32), mask)
    width = round(0.05 * 200)
    assert found["inside_share"] == pytest.approx(np.pi * 100 ** 2 / mask.size, rel=0.01)
    assert found["border_share"] == pytest.approx(np.pi * 4 * 100 * width / mask.size, rel=0.02)
    assert found["lesion_area_share"] == pytest.approx(mask.sum() / mask.size)


def test_pointing_game_follows_the_peak():
    mask = _disc(60)
    heatmap = np.zeros(mask.shape, np.float32)
    heatmap[200, 200] = 1
    assert attention_alignment(heatmap, mask)["pointing_game"]
    heatmap[10, 10] = 2
    found = attention_alignment(heatmap, mask)
    assert not found["pointing_game"]
    assert found["inside_share"] == pytest.approx(1 / 3)


def test_band_equals_disc_dilation_minus_erosion():
    rng = np.random.default_rng(3)
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    radius = 90 + 25 * np.sin(3 * angles) + rng.normal(0, 3, angles.size)
    y, x = np.mgrid[:400, :400]
    theta = np.arctan2(y - 200, x - 200) % (2 * np.pi)
    mask = np.hypot(x - 200, y - 200) <= radius[(theta / (2 * np.pi) * angles.size).astype(int) % angles.size]
    for width in (1, 4, 11):
        expected = dilation(mask, disk(width)) & ~erosion(mask, disk(width))
        assert np.array_equal(border_band(mask, width), expected)


def test_nothing_to_align():
    assert attention_alignment(np.ones((50, 50)), np.zeros((50, 50), np.uint8)) is None
    assert attention_alignment(np.zeros((50, 50)), _disc(10, 50)) is None
