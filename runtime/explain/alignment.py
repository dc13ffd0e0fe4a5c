"""How well an attention heatmap agrees with the lesion: mass inside, on the border band, pointing game."""

from __future__ import annotations

import cv2
import numpy as np


def attention_alignment(heatmap: np.ndarray, mask: np.ndarray, band_fraction: float = 0.05) -> dict | None:
    """heatmap H x W (non-negative), mask H x W (0/1) -> shares of attention mass and the pointing game."""
    mask = (mask > 0).astype(np.uint8)
    area = int(mask.sum())
    total = float(heatmap.sum())
    if area == 0 or total <= 0:
        return None
    width = max(1, int(round(band_fraction * np.sqrt(4 * area / np.pi))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return {"inside_share": float(heatmap[mask.astype(bool)].sum() / total),
            "border_share": float(heatmap[band.astype(bool)].sum() / total),
            "lesion_area_share": area / mask.size,
            "pointing_game": bool(mask[peak])}
