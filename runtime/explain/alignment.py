"""How well an attention heatmap agrees with the lesion: mass inside, on the border band, pointing game."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.regions import padded_box


def attention_alignment(heatmap: np.ndarray, mask: np.ndarray, band_fraction: float = 0.05) -> dict | None:
    """heatmap H x W (non-negative), mask H x W (0/1) -> shares of attention mass and the pointing game.
    The border band holds the pixels within `band_fraction` of the lesion's equivalent diameter of its outline."""
    inside = mask > 0
    area = int(inside.sum())
    total = float(heatmap.sum())
    if area == 0 or total <= 0:
        return None
    width = max(1, int(round(band_fraction * np.sqrt(4 * area / np.pi))))
    x0, y0, x1, y1 = padded_box(inside.view(np.uint8), width + 1)  # no band pixel lies further out
    band = border_band(inside[y0:y1, x0:x1], width)
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return {"inside_share": float(heatmap[inside].sum() / total),
            "border_share": float(heatmap[y0:y1, x0:x1][band].sum() / total),
            "lesion_area_share": area / mask.size,
            "pointing_game": bool(inside[peak])}


def border_band(inside: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` (Euclidean) of the other side of the outline: the dilation minus the erosion by a
    disc, from two exact distance transforms (linear time, where a disc-shaped kernel costs its area)."""
    lesion = inside.view(np.uint8)
    to_skin = cv2.distanceTransform(lesion, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_lesion = cv2.distanceTransform(1 - lesion, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(inside, to_skin <= width, to_lesion <= width)
