"""Is an input like the colour dermoscopy the model was trained on? Warnings that refer the image for review."""

from __future__ import annotations

import cv2
import numpy as np

# The 95th percentile of a pixel's channel spread (max - min, 0-255) below which an image counts as greyscale:
# a greyscale file replicated to RGB has 0 everywhere, JPEG noise a few units; skin in colour is well above 15.
GREYSCALE_CHROMA = 6


def domain_warnings(rgb: np.ndarray) -> list[str]:
    """Plain-words warnings for an input outside the training domain (empty: none found)."""
    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA) if max(rgb.shape[:2]) > 64 else rgb
    spread = small.max(axis=2).astype(np.int16) - small.min(axis=2)
    if np.percentile(spread, 95) < GREYSCALE_CHROMA:
        return ["the image has no colour (greyscale): the model was trained on colour dermoscopy, so its answer "
                "is not meaningful here"]
    return []
