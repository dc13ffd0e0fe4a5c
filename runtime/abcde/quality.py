"""Is an outline good enough to measure? A lesion outline lies on an edge: all around it, the colour just
inside differs from the colour just outside by more than the skin's own noise. An outline that followed a
shading gradient, leaked into the skin or was cut off by the image border fails here, and ABCD is then not
reported from it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SECTORS = 8
EDGE_STEP_BAR = 4.0  # CIELAB units; a just-noticeable difference is about 2.3
EDGE_NOISE_BAR = 0.8
WEAK_SECTOR_STEP = 2.5
WEAK_SECTOR_BAR = 4
BORDER_SHARE_BAR = 0.10


@dataclass(frozen=True)
class Quality:
    score: float  # median over the sectors of the inside/outside colour difference (CIELAB units)
    noise: float  # the skin's colour spread just outside the outline (CIELAB units)
    weak_sectors: int  # sectors of the outline with barely a colour difference
    border_share: float  # share of the outline on the image border (or the edge of a dermatoscope's view)
    reasons: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        return not self.reasons


NOT_FOUND = Quality(0.0, 0.0, SECTORS, 0.0, ("no lesion found",))


def assess(lab: np.ndarray, mask: np.ndarray, field_of_view: np.ndarray) -> Quality:
    """Quality of the outline of `mask` (0/1) on the CIELAB image `lab` of the same size."""
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    radius = np.sqrt(max(np.count_nonzero(mask), 1) / np.pi)
    width = max(2.0, 0.15 * radius)
    inner = (inside > 1) & (inside <= 1 + width)
    outer = (outside > 2) & (outside <= 2 + width) & (field_of_view > 0)
    if np.count_nonzero(inner) < 8 or np.count_nonzero(outer) < 8:
        return Quality(0.0, 0.0, SECTORS, 1.0, ("the outline is too small to judge",))
    sector = sectors(mask)
    skin = lab[outer]
    noise = 1.4826 * float(np.median(np.linalg.norm(skin - np.median(skin, axis=0), axis=1)))
    differences = []
    for index in range(SECTORS):
        band_in, band_out = inner & (sector == index), outer & (sector == index)
        if np.count_nonzero(band_in) < 3 or np.count_nonzero(band_out) < 3:
            differences.append(0.0)
            continue
        step = np.median(lab[band_in], axis=0) - np.median(lab[band_out], axis=0)
        differences.append(float(np.linalg.norm(step)))
    score = float(np.median(differences))
    weak = int(sum(d < WEAK_SECTOR_STEP for d in differences))
    share = border_share(mask, field_of_view)
    reasons = []
    if score < max(EDGE_STEP_BAR, EDGE_NOISE_BAR * noise):
        reasons.append(f"the outline does not follow a clear edge (colour step {score:.1f} across it, skin noise "
                       f"{noise:.1f}; {max(EDGE_STEP_BAR, EDGE_NOISE_BAR * noise):.1f} needed)")
    elif weak >= WEAK_SECTOR_BAR:
        reasons.append(f"{weak} of {SECTORS} sides of the outline lie on no edge (it leaks into the skin)")
    if share > BORDER_SHARE_BAR:
        reasons.append(f"{share:.0%} of the outline runs along the edge of the image: the lesion is cut off "
                       "or the outline took the background")
    return Quality(score, noise, weak, share, tuple(reasons))


def sectors(mask: np.ndarray) -> np.ndarray:
    """Each pixel's sector (0 to SECTORS - 1) by its angle about the mask's centroid."""
    moments = cv2.moments(mask, binaryImage=True)
    area = max(moments["m00"], 1.0)
    height, width = mask.shape
    ys, xs = np.mgrid[0:height, 0:width]
    angle = np.arctan2(ys - moments["m01"] / area, xs - moments["m10"] / area)
    return ((angle + np.pi) / (2 * np.pi) * SECTORS).astype(np.int32) % SECTORS


def border_share(mask: np.ndarray, field_of_view: np.ndarray) -> float:
    """Share of the mask's boundary pixels on the image border or next to the outside of the view."""
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = mask.astype(bool) & ~eroded.astype(bool)
    edge = np.zeros_like(boundary)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    outside_view = cv2.dilate((field_of_view == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(np.count_nonzero(boundary & (edge | outside_view)) / max(np.count_nonzero(boundary), 1))
