"""File-level ABCDE: one image, optionally a prior one, to measurements and an overlay picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.abcde.analyze import analyze, public
from runtime.abcde.evolution import evolution, register
from runtime.abcde.overlay import abcde_overlay
from runtime.imageio import load_image


def analyze_files(image: Path, prior: Path | None = None, mm_per_px: float | None = None) -> tuple[dict, np.ndarray]:
    rgb = load_image(image)
    current = analyze(rgb, mm_per_px)
    result = {"image": str(image), **public(current)}
    if prior is not None:
        result["evolution"] = evolution_between(load_image(prior), rgb, current, mm_per_px)
    return result, abcde_overlay(rgb, result, current.get("_mask"))


def evolution_between(prior_rgb: np.ndarray, current_rgb: np.ndarray, current: dict | None = None,
                      mm_per_px: float | None = None) -> dict:
    current = current or analyze(current_rgb, mm_per_px)
    before = analyze(prior_rgb, mm_per_px)
    prior_mask = before.get("_mask", np.zeros(prior_rgb.shape[:2], np.uint8))
    current_mask = current.get("_mask", np.zeros(current_rgb.shape[:2], np.uint8))
    registration = register(prior_rgb, current_rgb, prior_mask, current_mask)
    return evolution(public(before), public(current), registration, prior_mask, current_mask)
