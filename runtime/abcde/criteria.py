"""A, B, C, D by their clinical definitions, measured on an RGB image and a lesion mask."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from runtime.abcde.palette import COLOUR_NAMES, DERMOSCOPIC_COLOURS, to_lab
from runtime.abcde.shape import Region, feret_diameter, perimeter, reflect

RASTER_SIDE = 256
SHAPE_ASYMMETRY_THRESHOLD = 0.10
COLOUR_ASYMMETRY_THRESHOLD = 0.25
COLOUR_MIN_FRACTION = 0.05
COLOUR_MAX_DISTANCE = 30.0
CUTOFF_SHARPNESS = 0.5
LARGE_DIAMETER_MM = 6.0


def shape_asymmetry(region: Region) -> list[float]:
    """For each principal axis: |M xor mirror(M)| / |M|, the mask polygon mirrored about the axis
    through the centroid, all rasterised on one canvas of about RASTER_SIDE pixels (sub-pixel for small
    lesions, at most 2x)."""
    contour = region.contour.astype(np.float64)
    mirrors = [reflect(contour, region.centroid, axis) for axis in region.axes]
    every = np.vstack([contour, *mirrors])
    low, high = np.floor(every.min(0)) - 2, np.ceil(every.max(0)) + 2
    scale = min(2.0, RASTER_SIDE / float(np.max(high - low)))
    size = ((high - low) * scale).astype(int) + 1
    original = _raster((contour - low) * scale, size)
    area = max(cv2.countNonZero(original), 1)
    return [cv2.countNonZero(cv2.bitwise_xor(original, _raster((mirror - low) * scale, size))) / area
            for mirror in mirrors]


def _raster(polygon: np.ndarray, size) -> np.ndarray:
    canvas = np.zeros((size[1], size[0]), np.uint8)
    fixed = np.round(polygon * 16).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 1, cv2.LINE_8, shift=4)
    return canvas


def colour_asymmetry(lab: np.ndarray, mask: np.ndarray, region: Region) -> list[float]:
    """For each principal axis: total-variation distance (0..1) between the colour histograms of the
    two halves of the lesion on either side of the axis (every other pixel)."""
    index = np.flatnonzero(mask)[::2]
    ys, xs = np.divmod(index, mask.shape[1])
    colours = _quantise(lab.reshape(-1, 3)[index])
    offsets = np.stack([xs - region.centroid[0], ys - region.centroid[1]], axis=1)
    values = []
    for axis in region.axes:
        normal = np.array([-axis[1], axis[0]])
        side = offsets @ normal > 0
        if side.all() or not side.any():
            values.append(0.0)
            continue
        first = np.bincount(colours[side], minlength=64) / side.sum()
        second = np.bincount(colours[~side], minlength=64) / (~side).sum()
        values.append(float(0.5 * np.abs(first - second).sum()))
    return values


def _quantise(lab_pixels: np.ndarray) -> np.ndarray:
    lightness = np.clip(lab_pixels[:, 0] / 25, 0, 3).astype(int)
    a = np.clip((lab_pixels[:, 1] + 20) / 20, 0, 3).astype(int)
    b = np.clip((lab_pixels[:, 2] + 20) / 20, 0, 3).astype(int)
    return lightness * 16 + a * 4 + b


def compactness(region: Region) -> float:
    """P^2 / (4 pi A): 1 for a disc, larger for irregular borders (contour polygon area)."""
    area = cv2.contourArea(region.contour.astype(np.float32))
    length = perimeter(region.contour)
    if area <= 0:
        return 1.0
    return float(length**2 / (4 * np.pi * area))


def border_cutoff_segments(lightness: np.ndarray, mask: np.ndarray, region: Region) -> int:
    """ABCD rule B: how many of 8 sectors around the centroid show an abrupt cut-off of pigment: most
    of the lightness change across the border happens within a narrow band around it."""
    band = max(2, int(round(np.sqrt(region.area) / 40)))
    x, y, w, h = cv2.boundingRect(mask)
    margin = 5 * band + 1
    x0, y0 = max(x - margin, 0), max(y - margin, 0)
    x1, y1 = min(x + w + margin, mask.shape[1]), min(y + h + margin, mask.shape[0])
    crop = mask[y0:y1, x0:x1]
    inside = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - crop, cv2.DIST_L2, 3)
    # Band index per pixel: 0 none, 1 just inside, 2 just outside, 3 deep inside, 4 far outside.
    bands = ((inside > 0) & (inside <= band)) * 1 + ((outside > 0) & (outside <= band)) * 2 \
        + ((inside > 3 * band) & (inside <= 5 * band)) * 3 + ((outside > 3 * band) & (outside <= 5 * band)) * 4
    ys, xs = np.nonzero(bands)
    angles = np.arctan2(ys + y0 - region.centroid[1], xs + x0 - region.centroid[0]) - region.orientation
    sector = ((angles % (2 * np.pi)) / (np.pi / 4)).astype(int) % 8
    key = (bands[ys, xs] - 1) * 8 + sector
    counts = np.bincount(key, minlength=32).reshape(4, 8)
    means = np.bincount(key, weights=lightness[ys + y0, xs + x0], minlength=32).reshape(4, 8) / np.maximum(counts, 1)
    near_in, near_out, far_in, far_out = means
    usable = counts.min(axis=0) >= 5
    total = far_out - far_in
    step = near_out - near_in
    with np.errstate(divide="ignore", invalid="ignore"):
        abrupt = usable & (np.abs(total) > 5) & (step / np.where(total == 0, 1, total) > CUTOFF_SHARPNESS)
    return int(abrupt.sum())


def colours_present(lab: np.ndarray, mask: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """Which of the six dermoscopic colours cover more than COLOUR_MIN_FRACTION of the lesion: each
    pixel takes the nearest reference colour in CIELAB (within COLOUR_MAX_DISTANCE); every other pixel."""
    pixels = lab.reshape(-1, 3)[np.flatnonzero(mask)[::2]]
    if pixels.size == 0:
        return [], {}
    references = reference_lab()
    squared = (pixels**2).sum(axis=1)[:, None] - 2 * pixels @ references.T + (references**2).sum(axis=1)[None, :]
    nearest = squared.argmin(axis=1)
    close = squared[np.arange(len(pixels)), nearest] <= COLOUR_MAX_DISTANCE**2
    fractions = np.bincount(nearest[close], minlength=len(COLOUR_NAMES)) / len(pixels)
    coverage = {name: float(f) for name, f in zip(COLOUR_NAMES, fractions)}
    return [name for name in COLOUR_NAMES if coverage[name] > COLOUR_MIN_FRACTION], coverage


@lru_cache(maxsize=1)
def reference_lab() -> np.ndarray:
    swatches = np.array([[DERMOSCOPIC_COLOURS[name] for name in COLOUR_NAMES]], np.uint8)
    return to_lab(swatches)[0]


def diameters(region: Region, mm_per_px: float | None) -> dict:
    feret, ends = feret_diameter(region.hull)
    equivalent = float(np.sqrt(4 * region.area / np.pi))
    to_mm = (lambda px: round(px * mm_per_px, 3)) if mm_per_px else (lambda px: None)
    feret_mm = to_mm(feret)
    return {"feret_px": feret, "equivalent_px": equivalent, "feret_mm": feret_mm, "equivalent_mm": to_mm(equivalent),
            "mm_per_px": mm_per_px, "large": None if feret_mm is None else bool(feret_mm > LARGE_DIAMETER_MM),
            "feret_endpoints": ends.tolist()}
