"""Boxes around binary masks, shared by ABCD and the attention alignment."""

from __future__ import annotations

import cv2
import numpy as np


def padded_box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the mask's bounding box grown by `pad` pixels on each side, clipped to the image."""
    x, y, w, h = cv2.boundingRect(mask)
    return max(x - pad, 0), max(y - pad, 0), min(x + w + pad, mask.shape[1]), min(y + h + pad, mask.shape[0])
