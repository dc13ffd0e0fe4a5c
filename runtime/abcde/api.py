"""File-level ABCDE: one image, optionally a prior one, to measurements and an overlay picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.abcde.analyze import Analysis, analyze_with_mask, checked_domain
from runtime.abcde.evolution import evolution, register
from runtime.abcde.overlay import abcde_overlay, evolution_overlay
from runtime.errors import ConfigError, ImageError
from runtime.imageio import load_image
from runtime.options import check_position


def analyze_files(image: Path, prior: Path | None = None, mm_per_px: float | None = None,
                  lesion_at: tuple[float, float] | None = None) -> tuple[dict, np.ndarray]:
    """Measurements of `image` (and their change since `prior`) and the picture: the ABCD overlay, or with a
    prior, the prior aligned to this image, both outlines overlaid and the changes listed. `lesion_at` (x, y
    pixels) points at the lesion in `image`."""
    rgb = load_image(image)
    check_point(lesion_at, rgb, image)
    current = analyze_with_mask(rgb, mm_per_px, lesion_at=lesion_at, domain=checked_domain(rgb))
    result = {"image": str(image), **current.measurements}
    picture = abcde_overlay(rgb, result, current.mask)
    if prior is not None:
        prior_rgb = load_image(prior)
        before = analyze_with_mask(prior_rgb, mm_per_px, domain=checked_domain(prior_rgb))
        result["prior"] = str(prior)
        result["evolution"] = compare(prior_rgb, rgb, before, current)
        picture = evolution_overlay(prior_rgb, picture, _mask(before, prior_rgb), _mask(current, rgb),
                                    result["evolution"])
    return result, picture


def parse_point(value: str, option: str = "--lesion-at") -> tuple[float, float]:
    """'X,Y' (pixels of the upright image) -> (x, y)."""
    parts = value.split(",")
    if len(parts) != 2:
        raise ConfigError(f"{option} {value!r} is not X,Y: give the lesion's pixel position, e.g. 320,240")
    return check_position(parts, option)


def check_point(point: tuple[float, float] | None, rgb: np.ndarray, image: str | Path) -> None:
    height, width = rgb.shape[:2]
    if point is not None and not (point[0] < width and point[1] < height):
        raise ImageError(image, f"--lesion-at {point[0]:g},{point[1]:g} lies outside the image ({width}x{height} "
                         "pixels)", "Give a position inside it, counted from the top-left corner", usage=True)


def evolution_between(prior_rgb: np.ndarray, current_rgb: np.ndarray, mm_per_px: float | None = None) -> dict:
    return compare(prior_rgb, current_rgb, analyze_with_mask(prior_rgb, mm_per_px),
                   analyze_with_mask(current_rgb, mm_per_px))


def compare(prior_rgb: np.ndarray, current_rgb: np.ndarray, before: Analysis, current: Analysis) -> dict:
    prior_mask, current_mask = _mask(before, prior_rgb), _mask(current, current_rgb)
    registration = register(prior_rgb, current_rgb, prior_mask, current_mask)
    return evolution(before.measurements, current.measurements, registration, prior_mask, current_mask)


def _mask(analysis: Analysis, rgb: np.ndarray) -> np.ndarray:
    return analysis.mask if analysis.mask is not None else np.zeros(rgb.shape[:2], np.uint8)
