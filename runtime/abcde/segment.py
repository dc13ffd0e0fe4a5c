"""Lesion segmentation in OpenCV, robust to hairs, ruler marks, specular highlights and the dark
vignette of a dermatoscope: inpaint thin dark and small bright structures, threshold the colour distance
from the surrounding skin (CIELAB), keep the central component, then cut its edge at the half-contrast
point, pixel by pixel, at full resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse, field_of_view_mask, remove_artifacts
from runtime.abcde.edge import SKIN_LEVEL_FLOOR, largest_filled, refine_edge, upsample
from runtime.abcde.palette import to_lab

WORKING_SIDE = 200
MIN_CONTRAST = 10.0
NO_LESION_CONTRAST = 3.0
MIN_AREA_FRACTION = 0.003
SKIN_LEVEL_FACTOR = 5.0
RING_SAMPLES = 1500


@dataclass
class Segmentation:
    mask: np.ndarray
    flags: list[str] = field(default_factory=list)
    contrast: float = 0.0
    working_lab: np.ndarray | None = None  # the image at working resolution, in CIELAB
    hairs: np.ndarray | None = None  # long thin artefacts (hairs, ruler lines) at working resolution
    working_mask: np.ndarray | None = None  # the mask at working resolution
    contour: np.ndarray | None = None  # the mask's outer contour (K x 2), when known

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def found(self) -> bool:
        return "no_lesion" not in self.flags


def segment(image_rgb: np.ndarray) -> Segmentation:
    """RGB uint8 image of any size -> lesion mask (uint8 0/1, same size) and quality flags."""
    height, width = image_rgb.shape[:2]
    small = working_image(image_rgb)
    scale = small.shape[1] / width
    cleaned, holes, hairs = remove_artifacts(small)
    field_of_view = field_of_view_mask(cleaned)
    original_lab = to_lab(small)
    skin = skin_samples(field_of_view)
    distance = colour_distance_from_skin(with_pixels_of(original_lab, cleaned, holes), field_of_view, skin)
    small_mask, contrast, level = threshold_lesion(distance, field_of_view, skin)
    flags = []
    if small_mask is None or contrast < NO_LESION_CONTRAST:
        flags.append("no_lesion")
    elif contrast < MIN_CONTRAST:
        flags.append("low_contrast")
    if "no_lesion" in flags:
        empty = np.zeros((height, width), np.uint8)
        return Segmentation(empty, flags, float(contrast), original_lab, hairs)
    edge = refine_edge(small_mask, distance, field_of_view, hairs, level)
    small_mask = edge.mask
    mask, contour = (small_mask, None) if scale == 1 else upsample(edge, (width, height))
    if touches_border(small_mask, field_of_view):
        flags.append("touches_border")
    return Segmentation(mask, flags, float(contrast), original_lab, hairs, small_mask, contour)


def working_image(image_rgb: np.ndarray) -> np.ndarray:
    """Downscale by the whole factor that brings the longer side to at most WORKING_SIDE (OpenCV's area
    resampling is several times faster for whole factors)."""
    height, width = image_rgb.shape[:2]
    factor = int(np.ceil(max(height, width) / WORKING_SIDE))
    if factor <= 1:
        return image_rgb
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)


def with_pixels_of(lab: np.ndarray, image_rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`lab` with the pixels at `where` taken from `image_rgb` (converting only those)."""
    index = np.flatnonzero(where)
    if index.size == 0:
        return lab
    out = lab.copy()
    out.reshape(-1, 3)[index] = to_lab(image_rgb.reshape(-1, 3)[index][None])[0]
    return out


def colour_distance_from_skin(lab: np.ndarray, field_of_view: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """CIELAB distance of every pixel from the skin colour, the median at the `skin` sample pixels."""
    skin_colour = np.median(lab.reshape(-1, 3)[skin], axis=0)
    difference = lab - skin_colour.astype(np.float32)
    distance = cv2.sqrt(cv2.transform(difference * difference, np.ones((1, 3), np.float32)))
    return cv2.GaussianBlur(distance, (3, 3), 0) * field_of_view


def skin_samples(field_of_view: np.ndarray) -> np.ndarray:
    """Flat indices of pixels in the outer ring of the view (about RING_SAMPLES), where the skin is."""
    ring = outer_ring(field_of_view.shape)
    ring = ring[field_of_view.ravel()[ring] > 0]
    if ring.size >= 50:
        return ring
    view = np.flatnonzero(field_of_view)
    return view[:: max(1, view.size // RING_SAMPLES)]


@lru_cache(maxsize=8)
def outer_ring(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    ring = np.flatnonzero(np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2)) > 0.75)
    return ring[:: max(1, ring.size // RING_SAMPLES)]


def threshold_lesion(distance: np.ndarray, field_of_view: np.ndarray,
                     skin: np.ndarray) -> tuple[np.ndarray | None, float, float]:
    """Lesion = clearly unlike the skin: hysteresis from Otsu's level down to a level set by the skin's own
    spread at the `skin` sample pixels, so a lesion of many colours is not split at its own colour
    boundaries. Returns (mask, contrast, threshold in distance units)."""
    view_area = cv2.countNonZero(field_of_view)
    if view_area == 0:
        return None, 0.0, 0.0
    highest = cv2.minMaxLoc(distance, field_of_view)[1]
    if highest <= 0:
        return None, 0.0, 0.0
    unit = highest / 255.0
    scaled = cv2.convertScaleAbs(distance, alpha=1 / unit)
    high = otsu_level(cv2.calcHist([scaled], [0], field_of_view, [256], [0, 256]).ravel()) * unit
    skin_distance = distance.ravel()[skin]
    centre = float(np.median(skin_distance))
    spread = 1.4826 * float(np.median(np.abs(skin_distance - centre)))
    level = min(high, max(SKIN_LEVEL_FLOOR, centre + SKIN_LEVEL_FACTOR * spread))
    binary = hysteresis(distance, high, level, field_of_view)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, ellipse(5))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, ellipse(7))
    component = central_component(binary)
    if component is None or cv2.countNonZero(component) < MIN_AREA_FRACTION * view_area:
        return None, 0.0, 0.0
    component = largest_filled(component)
    return component, lesion_contrast(distance, component, field_of_view), level


def otsu_level(histogram: np.ndarray) -> float:
    """Otsu's threshold of a 256-bin histogram: the level that maximises the between-class variance."""
    share = histogram / max(histogram.sum(), 1)
    below = np.cumsum(share)
    below_mean = np.cumsum(share * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (below_mean[-1] * below - below_mean) ** 2 / (below * (1 - below))
    return float(np.argmax(np.nan_to_num(between[:-1], nan=-1.0)))


def lesion_contrast(distance: np.ndarray, component: np.ndarray, field_of_view: np.ndarray) -> float:
    """Median colour distance inside the lesion minus outside it (every other row and column)."""
    sampled, lesion, view = distance[::2, ::2], component[::2, ::2] > 0, field_of_view[::2, ::2] > 0
    return float(np.median(sampled[lesion]) - np.median(sampled[view & ~lesion]))


def hysteresis(distance: np.ndarray, high: float, low: float, field_of_view: np.ndarray) -> np.ndarray:
    """Pixels above `low` that are connected to a pixel above `high` (Otsu's core of the lesion)."""
    candidates = cv2.bitwise_and(cv2.compare(distance, low, cv2.CMP_GT), field_of_view * np.uint8(255)) // 255
    count, labels = cv2.connectedComponents(candidates, connectivity=8)
    seeded = np.bincount(labels[distance > high], minlength=count) > 0
    seeded[0] = False
    return seeded.astype(np.uint8)[labels]


def central_component(binary: np.ndarray) -> np.ndarray | None:
    """The connected component with the largest area weighted by closeness to the image centre."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return None
    height, width = binary.shape
    offsets = np.hypot((centroids[1:, 0] - width / 2) / width, (centroids[1:, 1] - height / 2) / height)
    scores = stats[1:, cv2.CC_STAT_AREA] * np.exp(-4 * offsets**2)
    return (labels == 1 + int(np.argmax(scores))).astype(np.uint8)


def touches_border(mask: np.ndarray, field_of_view: np.ndarray) -> bool:
    edge = np.zeros_like(mask, bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    outside_view = cv2.dilate((field_of_view == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool((mask.astype(bool) & (edge | outside_view)).any())
