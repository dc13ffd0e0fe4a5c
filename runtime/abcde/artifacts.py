"""What is not skin or lesion: hairs and ruler marks, specular highlights, the dark vignette of a
dermatoscope. All functions work on the small working image."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

DARK_LINE_CONTRAST = 18
HIGHLIGHT_CONTRAST = 40
VIGNETTE_DARKNESS = 0.35


@lru_cache(maxsize=16)
def ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def remove_artifacts(image: np.ndarray, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inpaint thin dark structures (morphological black-hat: hairs, ruler marks, also dots) and specular
    highlights (top-hat) narrower than `size` pixels (default: a 40th of the image's longer side). Returns
    the cleaned image, the mask (0/1) of what was inpainted and that of the long structures among them
    (hairs, lines)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    size = max(5, int(max(image.shape[:2]) / 40 if size is None else size) | 1)
    dark_lines = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, ellipse(size))
    bright_spots = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, ellipse(size))
    artifacts = cv2.bitwise_or(cv2.compare(dark_lines, DARK_LINE_CONTRAST, cv2.CMP_GT),
                               cv2.compare(bright_spots, HIGHLIGHT_CONTRAST, cv2.CMP_GT))
    artifacts = cv2.dilate(artifacts, ellipse(3)) // 255
    if not cv2.countNonZero(artifacts):
        return image, artifacts, artifacts
    return inpaint_normalised(image, artifacts, size), artifacts, long_components(artifacts, 3 * size)


def inpaint_normalised(image: np.ndarray, holes: np.ndarray, size: int) -> np.ndarray:
    """Fill the holes with the mean of the valid pixels around them (normalised convolution): a fast
    inpainting, ample for hairs and small highlights. Where a window of `size` holds too few valid pixels
    (crossing or parallel hairs), a window three times wider fills in, and so on while any remain."""
    valid = (1 - holes) * np.uint8(255)
    masked = cv2.bitwise_and(image, image, mask=valid)
    where = np.flatnonzero(holes)
    weights = np.zeros(where.size, np.float32)
    sums = np.zeros((where.size, 3), np.float32)
    pending = np.ones(where.size, bool)
    window, largest = size, 2 * max(image.shape[:2]) + 1
    while pending.any() and window <= largest:
        found = cv2.blur(valid, (window, window)).ravel()[where]
        take = pending & (found >= 0.3 * 255 if window == size else found > 0)
        weights[take] = found[take]
        sums[take] = cv2.blur(masked, (window, window)).reshape(-1, 3)[where[take]]
        pending &= ~take
        window *= 3
    out = image.copy()
    out.reshape(-1, 3)[where] = np.clip(sums * 255 / np.maximum(weights, 1)[:, None], 0, 255).astype(np.uint8)
    return out


def long_components(mask: np.ndarray, min_length: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    long = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= min_length
    long[0] = False
    return long.astype(np.uint8)[labels]


def field_of_view_mask(image: np.ndarray) -> np.ndarray:
    """Everything but the dark vignette (and black borders) that reaches in from the image corners (0/1).
    The view of a dermatoscope is convex, so a dark lesion that touches the vignette stays in view: the
    view is the convex hull of what is not vignette."""
    value = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2], (5, 5), 0)
    bright = percentile_u8(value, 90)
    dark = cv2.compare(value, VIGNETTE_DARKNESS * bright, cv2.CMP_LT) // 255
    count, labels = cv2.connectedComponents(dark)
    height, width = dark.shape
    vignette = np.zeros(count, np.uint8)
    vignette[[labels[0, 0], labels[0, width - 1], labels[height - 1, 0], labels[height - 1, width - 1]]] = 1
    vignette[0] = 0
    view = 1 - vignette[labels]
    if cv2.countNonZero(view) < 0.2 * view.size:
        return np.ones_like(view)
    outlines, _ = cv2.findContours(view, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(outlines))  # the hull of the outer outlines is the hull of the view
    return cv2.erode(cv2.fillConvexPoly(np.zeros_like(view), hull, 1), np.ones((5, 5), np.uint8))


def percentile_u8(values: np.ndarray, q: float, mask: np.ndarray | None = None) -> float:
    """The q-th percentile of a uint8 image (within `mask`), from its histogram."""
    histogram = cv2.calcHist([values], [0], mask, [256], [0, 256]).ravel()
    cumulative = np.cumsum(histogram)
    return float(np.searchsorted(cumulative, q / 100 * cumulative[-1]))
