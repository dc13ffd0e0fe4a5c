"""Is an outline good enough to measure? A lesion outline lies on an edge: all around it, the colour just
inside differs from the colour just outside by more than the skin's own noise. An outline that followed a
shading gradient, leaked into the skin or was cut off by the image border fails here, and ABCD is then not
reported from it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.abcde.robust import MAD_TO_SIGMA
from runtime.regions import padded_box

SECTORS = 8
EDGE_STEP_BAR = 4.0  # CIELAB units; a just-noticeable difference is about 2.3
EDGE_NOISE_BAR = 0.8
WEAK_SECTOR_STEP = 2.5
WEAK_SECTOR_BAR = 4
BORDER_SHARE_BAR = 0.10
UNSURE_SHARE_BAR = 0.45
UNSURE_LOW, UNSURE_HIGH = 0.2, 0.8


@dataclass(frozen=True)
class Quality:
    score: float  # median over the sectors of the inside/outside colour difference (CIELAB units)
    noise: float  # the skin's colour spread just outside the outline (CIELAB units)
    weak_sectors: int  # sectors of the outline with barely a colour difference
    border_share: float  # share of the outline on the image border (or the edge of a dermatoscope's view)
    reasons: tuple[str, ...]
    unsure_share: float | None = None  # learned outlines: pixels the segmenter is unsure of, per lesion pixel

    @property
    def reliable(self) -> bool:
        return not self.reasons


NOT_FOUND = Quality(0.0, 0.0, SECTORS, 0.0, ("no lesion found",))


def assess(lab: np.ndarray, mask: np.ndarray, field_of_view: np.ndarray,
           probability: np.ndarray | None = None) -> Quality:
    """Quality of the outline of `mask` (0/1) on the CIELAB image `lab` of the same size, measured in a box
    around the lesion (the bands reach at most 2 + width pixels out). With the learned segmenter's `probability`
    map, the outline is judged as the segmenter drew it: withheld where the segmenter is unsure of too much of
    the view or no colour step runs along it; a lesion reaching the image's edge is measured (flagged), since
    the segmenter does not follow the background."""
    if probability is not None:
        return assess_learned(lab, mask, field_of_view, probability)
    radius = np.sqrt(max(np.count_nonzero(mask), 1) / np.pi)
    width = max(2.0, 0.15 * radius)
    x0, y0, x1, y1 = padded_box(mask, int(np.ceil(2 + width)) + 3)
    window = (slice(y0, y1), slice(x0, x1))
    mask, lab, field_of_view = mask[window], lab[window], field_of_view[window]
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    inner = (inside > 1) & (inside <= 1 + width)
    outer = (outside > 2) & (outside <= 2 + width) & (field_of_view > 0)
    if np.count_nonzero(inner) < 8 or np.count_nonzero(outer) < 8:
        return Quality(0.0, 0.0, SECTORS, 1.0, ("the outline is too small to judge",))
    skin = lab[outer]
    noise = MAD_TO_SIGMA * float(np.median(np.linalg.norm(skin - np.median(skin, axis=0), axis=1)))
    centre = centroid(mask)
    inner_sector, outer_sector = sectors(np.nonzero(inner), centre), sectors(np.nonzero(outer), centre)
    inner_lab = lab[inner]
    differences = []
    for index in range(SECTORS):
        band_in, band_out = inner_lab[inner_sector == index], skin[outer_sector == index]
        if len(band_in) >= 3 and len(band_out) >= 3:  # a side cut off by the view's edge has no skin to judge by
            differences.append(float(np.linalg.norm(np.median(band_in, axis=0) - np.median(band_out, axis=0))))
    if not differences:
        return Quality(0.0, noise, SECTORS, border_share(mask, field_of_view), ("no side of the outline has skin "
                                                                               "beyond it to judge it by",))
    score = float(np.median(differences))
    weak = int(sum(d < WEAK_SECTOR_STEP for d in differences))
    share = border_share(mask, field_of_view)
    reasons = edge_reasons(score, weak, max(EDGE_STEP_BAR, EDGE_NOISE_BAR * noise), noise)
    if share > BORDER_SHARE_BAR:
        reasons.append(f"{share:.0%} of the outline runs along the edge of the image: the outline took the "
                       "background, or too little of the lesion is in view")
    return Quality(score, noise, weak, share, tuple(reasons))


def assess_learned(lab: np.ndarray, mask: np.ndarray, field_of_view: np.ndarray, probability: np.ndarray) -> Quality:
    """The colour check's edge step and weak sides at a fixed bar (the segmenter, not the skin's noise, decides
    what is lesion), and the share of the view the segmenter is unsure of; the image's edge is no reason."""
    colour = assess(lab, mask, field_of_view)
    unsure = cv2.countNonZero(cv2.inRange(probability, UNSURE_LOW, UNSURE_HIGH) & (field_of_view * np.uint8(255)))
    share = unsure / max(cv2.countNonZero(mask), 1)
    reasons = edge_reasons(colour.score, colour.weak_sectors, EDGE_STEP_BAR)
    if share > UNSURE_SHARE_BAR:
        reasons.append(f"the segmenter is unsure where the lesion ends over an area {share:.0%} of the lesion's")
    return Quality(colour.score, colour.noise, colour.weak_sectors, colour.border_share, tuple(reasons), share)


def edge_reasons(score: float, weak_sectors: int, needed: float, noise: float | None = None) -> list[str]:
    """Why an outline with median colour step `score` across it and `weak_sectors` sides on no edge does not lie
    on the lesion's edge (none if it does): the step must reach `needed` (set by the skin's `noise`, when given)."""
    if score < needed:
        measured = f"colour step {score:.1f} across it" + ("," if noise is None else f", skin noise {noise:.1f};")
        return [f"the outline does not follow a clear edge ({measured} {needed:.1f} needed)"]
    if weak_sectors >= WEAK_SECTOR_BAR:
        return [f"{weak_sectors} of {SECTORS} sides of the outline lie on no edge (it leaks into the skin)"]
    return []


def centroid(mask: np.ndarray) -> tuple[float, float]:
    moments = cv2.moments(mask, binaryImage=True)
    area = max(moments["m00"], 1.0)
    return moments["m10"] / area, moments["m01"] / area


def sectors(pixels: tuple[np.ndarray, np.ndarray], centre: tuple[float, float]) -> np.ndarray:
    """Each pixel's (rows, columns) sector, 0 to SECTORS - 1, by its angle about `centre` (x, y)."""
    angle = np.arctan2(pixels[0] - centre[1], pixels[1] - centre[0])
    return ((angle + np.pi) / (2 * np.pi) * SECTORS).astype(np.int32) % SECTORS


def border_share(mask: np.ndarray, field_of_view: np.ndarray) -> float:
    """Share of the mask's boundary pixels on the image border or next to the outside of the view."""
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = mask.astype(bool) & ~eroded.astype(bool)
    return float(np.count_nonzero(boundary & view_edge(field_of_view)) / max(np.count_nonzero(boundary), 1))


def view_edge(field_of_view: np.ndarray) -> np.ndarray:
    """Where a lesion outline is cut off: the image's outer rows and columns and 2 pixels around what is out
    of view (boolean)."""
    edge = np.zeros(field_of_view.shape, bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    return edge | cv2.dilate((field_of_view == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
