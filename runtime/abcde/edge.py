"""Where exactly the lesion ends: a per-pixel cut at the half-contrast point of a soft edge, found on the
working image and carried to full resolution by thresholding the interpolated colour distance."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse
from runtime.abcde.robust import median_spread
from runtime.abcde.shape import largest_contour
from runtime.regions import padded_box

SKIN_LEVEL_FLOOR = 6.0
SKIN_NOISE_FACTOR = 2.0
EDGE_WINDOW = 15
MARGIN = 16
HAIR_VOTE_WINDOW = 7


@dataclass
class Edge:
    mask: np.ndarray  # 0/1 at working resolution
    margin: np.ndarray  # colour distance minus the local cut level, inside `box`
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 at working resolution


def refine_edge(component: np.ndarray, distance: np.ndarray, field_of_view: np.ndarray, hairs: np.ndarray,
                fallback_level: float) -> Edge:
    """Extend the component (by up to 4 px) to where the colour distance crosses half-way between the skin
    and the lesion interior nearby, never within the noise of the skin around the lesion; `upsample` then
    cuts the edge at that level, inwards too, at full resolution. Under a hair the colour is only inpainted,
    so there the mask follows the majority of the pixels around."""
    box = padded_box(component, MARGIN)
    window = (slice(box[1], box[3]), slice(box[0], box[2]))
    lesion, local_distance = component[window], distance[window]
    inside = cv2.distanceTransform(lesion, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - lesion, cv2.DIST_L2, 3)
    levels = cut_levels(local_distance, inside, outside, field_of_view[window], fallback_level)
    margin = local_distance - levels
    refined = (((margin > 0) & (outside <= 4)) | (inside > 0)).astype(np.uint8)
    local_hairs = hairs[window]
    if cv2.countNonZero(local_hairs):
        seen = (1 - local_hairs).astype(np.float32)
        window_size = (HAIR_VOTE_WINDOW, HAIR_VOTE_WINDOW)
        votes = cv2.blur(refined * seen, window_size) / np.maximum(cv2.blur(seen, window_size), 1e-3)
        refined = np.where(local_hairs > 0, votes > 0.5, refined).astype(np.uint8)
    refined = largest_filled(cv2.morphologyEx(refined, cv2.MORPH_OPEN, ellipse(3)))
    if not refined.any():
        refined = lesion
    mask = np.zeros_like(component)
    mask[window] = refined
    return Edge(mask, margin, box)


def cut_levels(distance: np.ndarray, inside: np.ndarray, outside: np.ndarray, field_of_view: np.ndarray,
               fallback: float) -> np.ndarray:
    """Per pixel: half the lesion's colour distance nearby, at least the skin's noise level."""
    skin = distance[(outside > 5) & (outside <= 12) & (field_of_view > 0)]
    if skin.size >= 50:
        centre, spread = median_spread(skin)
        noise = centre + SKIN_NOISE_FACTOR * spread
    else:
        noise = fallback
    floor = max(noise, SKIN_LEVEL_FLOOR)
    interior = (inside > 2).astype(np.float32)
    if cv2.countNonZero(interior) < 10:
        return np.full(distance.shape, max(floor, fallback), np.float32)
    size = (EDGE_WINDOW, EDGE_WINDOW)
    weight = cv2.blur(interior, size)
    local = cv2.blur(distance * interior, size) / np.maximum(weight, 1e-3)
    far_from_interior = weight <= 0.05
    if far_from_interior.any():
        local[far_from_interior] = float(np.median(distance[interior > 0]))
    return np.maximum(0.5 * local, floor).astype(np.float32)


def upsample(edge: Edge, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The mask at full resolution (width, height) and its outer contour: the interpolated margin's zero
    crossing, within a band around the working-resolution edge."""
    width, height = size
    small_height, small_width = edge.mask.shape
    factor_x, factor_y = width / small_width, height / small_height
    x0, y0, x1, y1 = padded_box(edge.mask, 3)
    bx0, by0 = edge.box[:2]
    sub = (slice(y0, y1), slice(x0, x1))
    margin = edge.margin[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    box = (round(x0 * factor_x), round(y0 * factor_y), round(x1 * factor_x), round(y1 * factor_y))
    crop_size = (box[2] - box[0], box[3] - box[1])
    fine_margin = cv2.resize(margin, crop_size, interpolation=cv2.INTER_LINEAR)
    small = edge.mask[sub]
    zones = cv2.dilate(small, ellipse(5)) + cv2.erode(small, np.ones((3, 3), np.uint8))  # 1 band, 2 core
    fine_zones = cv2.resize(zones, crop_size, interpolation=cv2.INTER_NEAREST)
    in_band = cv2.bitwise_and(cv2.compare(fine_margin, 0, cv2.CMP_GT), cv2.compare(fine_zones, 1, cv2.CMP_GE))
    fine = cv2.bitwise_or(in_band, cv2.compare(fine_zones, 2, cv2.CMP_EQ)) // 255
    contour = largest_contour(fine)
    if contour is None:
        contour = largest_contour(fine_zones)
    contour = contour + np.array(box[:2], np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.drawContours(mask, [contour.reshape(-1, 1, 2)], -1, 1, thickness=cv2.FILLED)
    return mask, contour


def largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest outer region of the mask, holes filled."""
    contour = largest_contour(mask)
    filled = np.zeros_like(mask)
    if contour is not None:
        cv2.drawContours(filled, [contour.reshape(-1, 1, 2)], -1, 1, thickness=cv2.FILLED)
    return filled
