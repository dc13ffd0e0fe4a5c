"""Lesion segmentation in OpenCV, robust to hairs, ruler marks, specular highlights and the dark
vignette of a dermatoscope: inpaint thin dark and small bright structures, then threshold the colour
distance from the surrounding skin (CIELAB) with Otsu's method and keep the central component."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

WORKING_SIDE = 200
MIN_CONTRAST = 10.0
NO_LESION_CONTRAST = 3.0
MIN_AREA_FRACTION = 0.003
SKIN_LEVEL_FLOOR = 6.0
SKIN_LEVEL_FACTOR = 5.0


@dataclass
class Segmentation:
    mask: np.ndarray
    flags: list[str] = field(default_factory=list)
    contrast: float = 0.0
    working_image: np.ndarray | None = None  # the image at working resolution
    hairs: np.ndarray | None = None  # long thin artefacts (hairs, ruler lines) at working resolution

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
    cleaned, hairs = remove_artifacts(small)
    field_of_view = field_of_view_mask(cleaned)
    lab = cv2.cvtColor(cleaned, cv2.COLOR_RGB2LAB).astype(np.float32)
    distance = colour_distance_from_skin(lab, field_of_view)
    small_mask, contrast, level = threshold_lesion(distance, field_of_view)
    flags = []
    if small_mask is None or contrast < NO_LESION_CONTRAST:
        flags.append("no_lesion")
    elif contrast < MIN_CONTRAST:
        flags.append("low_contrast")
    if "no_lesion" in flags:
        return Segmentation(np.zeros((height, width), np.uint8), flags or ["no_lesion"], float(contrast), small, hairs)
    mask = small_mask if scale == 1 else upsample_mask(small_mask, distance, level, (width, height))
    if touches_border(small_mask, field_of_view):
        flags.append("touches_border")
    return Segmentation(mask, flags, float(contrast), small, hairs)


def working_image(image_rgb: np.ndarray) -> np.ndarray:
    """Downscale by the whole factor that brings the longer side to at most WORKING_SIDE (OpenCV's area
    resampling is several times faster for whole factors)."""
    height, width = image_rgb.shape[:2]
    factor = int(np.ceil(max(height, width) / WORKING_SIDE))
    if factor <= 1:
        return image_rgb
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)


def upsample_mask(small_mask: np.ndarray, distance: np.ndarray, level: float, size) -> np.ndarray:
    """Threshold the interpolated distance map at full resolution, within the chosen component, so the
    boundary is smooth rather than a magnified staircase."""
    width, height = size
    factor_x, factor_y = width / small_mask.shape[1], height / small_mask.shape[0]
    x, y, w, h = cv2.boundingRect(small_mask)
    x0, y0 = max(x - 3, 0), max(y - 3, 0)
    x1, y1 = min(x + w + 3, small_mask.shape[1]), min(y + h + 3, small_mask.shape[0])
    box = (round(x0 * factor_x), round(y0 * factor_y), round(x1 * factor_x), round(y1 * factor_y))
    crop_size = (box[2] - box[0], box[3] - box[1])
    fine_distance = cv2.resize(distance[y0:y1, x0:x1], crop_size, interpolation=cv2.INTER_LINEAR)
    region = cv2.dilate(small_mask, np.ones((5, 5), np.uint8))[y0:y1, x0:x1]
    inside = cv2.resize(region, crop_size, interpolation=cv2.INTER_NEAREST).astype(bool)
    core = cv2.erode(small_mask, np.ones((3, 3), np.uint8))[y0:y1, x0:x1]
    core = cv2.resize(core, crop_size, interpolation=cv2.INTER_NEAREST).astype(bool)
    fine = ((fine_distance > level) & inside) | core
    mask = np.zeros((height, width), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = largest_filled(fine.astype(np.uint8))
    return mask


def remove_artifacts(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inpaint thin dark structures (morphological black-hat: hairs, ruler marks, also dots) and specular
    highlights (top-hat). Returns the cleaned image and the mask of the long ones (hairs, lines)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    side = max(image.shape[:2])
    size = max(5, int(side / 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    dark_lines = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
    bright_spots = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)
    artifacts = ((dark_lines > 18) | (bright_spots > 40)).astype(np.uint8)
    artifacts = cv2.dilate(artifacts, np.ones((3, 3), np.uint8))
    if not artifacts.any():
        return image, artifacts
    return inpaint_normalised(image, artifacts, size), long_components(artifacts, 3 * size)


def long_components(mask: np.ndarray, min_length: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = np.flatnonzero(extent >= min_length)
    keep = keep[keep != 0]
    return np.isin(labels, keep).astype(np.uint8)


def inpaint_normalised(image: np.ndarray, holes: np.ndarray, size: int) -> np.ndarray:
    """Fill the holes with the mean of the valid pixels in a window around them (normalised
    convolution): a fast inpainting, ample for thin hairs and small highlights."""
    window = (size, size)
    weights = cv2.blur((1 - holes) * np.uint8(255), window)
    summed = cv2.blur(image * (1 - holes)[..., None], window)
    holes = holes.astype(bool)
    filled = summed[holes].astype(np.float32) * 255 / np.maximum(weights[holes], 1)[:, None].astype(np.float32)
    out = image.copy()
    out[holes] = np.clip(filled, 0, 255).astype(np.uint8)
    return out


def field_of_view_mask(image: np.ndarray) -> np.ndarray:
    """Everything but the dark vignette (and black borders) that reaches in from the image corners."""
    value = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2]
    dark = (cv2.GaussianBlur(value, (5, 5), 0) < 0.35 * np.percentile(value, 90)).astype(np.uint8)
    count, labels = cv2.connectedComponents(dark)
    height, width = dark.shape
    corner_labels = {labels[0, 0], labels[0, width - 1], labels[height - 1, 0], labels[height - 1, width - 1]}
    vignette = np.isin(labels, [lab for lab in corner_labels if lab != 0 and dark[labels == lab].size])
    view = (~vignette).astype(np.uint8)
    if view.sum() < 0.2 * view.size:
        return np.ones_like(view)
    return cv2.erode(view, np.ones((5, 5), np.uint8))


def colour_distance_from_skin(lab: np.ndarray, field_of_view: np.ndarray) -> np.ndarray:
    """CIELAB distance of every pixel from the skin colour, estimated in the outer ring of the view."""
    ring = outer_ring(field_of_view.shape) & field_of_view.astype(bool)
    if ring.sum() < 50:
        ring = field_of_view.astype(bool)
    skin = np.median(lab[ring][::16], axis=0)
    # OpenCV's 8-bit Lab stores L*255/100 and a, b offset by 128: back to CIELAB units.
    difference = (lab - skin) * np.array([100 / 255, 1, 1], np.float32)
    distance = cv2.sqrt(cv2.transform(difference * difference, np.ones((1, 3), np.float32)))
    return cv2.GaussianBlur(distance, (3, 3), 0) * field_of_view


@lru_cache(maxsize=8)
def outer_ring(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    return np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2)) > 0.75


def threshold_lesion(distance: np.ndarray, field_of_view: np.ndarray) -> tuple[np.ndarray | None, float, float]:
    """Lesion = clearly unlike the skin: hysteresis from Otsu's level down to a level set by the skin's own
    spread in the outer ring, so a lesion of many colours is not split at its own colour boundaries.
    Returns (mask, contrast, threshold in distance units)."""
    inside = field_of_view.astype(bool)
    values = distance[inside]
    if values.size == 0 or values.max() <= 0:
        return None, 0.0, 0.0
    unit = max(values.max(), 1e-6) / 255.0
    scaled = np.clip(distance / unit, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled[inside], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ring = outer_ring(distance.shape) & inside
    skin = distance[ring] if ring.sum() >= 50 else values
    centre = float(np.median(skin))
    spread = 1.4826 * float(np.median(np.abs(skin - centre)))
    level = min(float(otsu) * unit, max(SKIN_LEVEL_FLOOR, centre + SKIN_LEVEL_FACTOR * spread))
    binary = hysteresis(distance, float(otsu) * unit, level, inside)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    component = central_component(binary)
    if component is None or component.sum() < MIN_AREA_FRACTION * inside.sum():
        return None, 0.0, 0.0
    component = largest_filled(component)
    contrast = float(np.median(distance[component.astype(bool)][::4])
                     - np.median(distance[inside & (component == 0)][::4]))
    return component, contrast, boundary_level(distance, component, level)


def boundary_level(distance: np.ndarray, component: np.ndarray, level: float) -> float:
    """Where a soft edge is cut: half-way between the skin and the lesion's lighter interior colours
    (their lower quartile, so pale regions stay in), never below the skin-noise level."""
    interior = cv2.erode(component, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))).astype(bool)
    if interior.sum() < 10:
        return level
    return max(level, 0.5 * float(np.percentile(distance[interior], 10)))


def hysteresis(distance: np.ndarray, high: float, low: float, inside: np.ndarray) -> np.ndarray:
    """Pixels above `low` that are connected to a pixel above `high` (Otsu's core of the lesion)."""
    candidates = ((distance > low) & inside).astype(np.uint8)
    count, labels = cv2.connectedComponents(candidates, connectivity=8)
    seeded = np.unique(labels[(distance > high) & inside])
    return np.isin(labels, seeded[seeded != 0]).astype(np.uint8)


def central_component(binary: np.ndarray) -> np.ndarray | None:
    """The connected component with the largest area weighted by closeness to the image centre."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return None
    height, width = binary.shape
    offsets = np.hypot((centroids[1:, 0] - width / 2) / width, (centroids[1:, 1] - height / 2) / height)
    scores = stats[1:, cv2.CC_STAT_AREA] * np.exp(-4 * offsets**2)
    return (labels == 1 + int(np.argmax(scores))).astype(np.uint8)


def largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest outer region of the mask, holes filled."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if contours:
        cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, thickness=cv2.FILLED)
    return filled


def touches_border(mask: np.ndarray, field_of_view: np.ndarray) -> bool:
    edge = np.zeros_like(mask, bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    outside_view = cv2.dilate((field_of_view == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool((mask.astype(bool) & (edge | outside_view)).any())
