"""Finding a lesion that is small, pale or one of several in a wide clinical view, lit unevenly.

The colour distance is taken from the skin's own colour where it is (a robust quadratic surface fitted to the
view in CIELAB, so light falling off across the frame is not mistaken for a lesion), blobs clearly unlike the
skin around them are candidates, and the target is the candidate nearest the point asked for (the centre by
default). The caller then segments a crop around it, where the lesion is large and the light even."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse
from runtime.abcde.robust import median_spread

LOCATE_SIDE = 320
MIN_CANDIDATE_SHARE = 0.0008
CANDIDATE_LEVEL_FACTOR = 3.0
CANDIDATE_LEVEL_FLOOR = 4.0
CANDIDATE_SMOOTHING = 2.0
FIT_ITERATIONS = 4
FIT_STEP = 3


@dataclass(frozen=True)
class Candidate:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the located image's pixels
    centroid: tuple[float, float]
    contrast: float  # median colour distance inside minus that in a ring around it


def background_distance(lab: np.ndarray, degree: int = 2, valid: np.ndarray | None = None) -> np.ndarray:
    """CIELAB distance of every pixel from a smooth surface fitted to the view (per channel, polynomial of
    `degree` in x and y), refitted without the pixels unlike it so that lesions, freckles and hairs do not
    pull it. Only darkening counts in L: a lesion is darker or redder than the skin around it, while glare,
    date stamps and watermarks are lighter."""
    height, width = lab.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    terms = polynomial_terms(xs.ravel() / width - 0.5, ys.ravel() / height - 0.5, degree)
    pixels = lab.reshape(-1, 3)
    sample = np.zeros(height * width, bool)
    sample.reshape(height, width)[::FIT_STEP, ::FIT_STEP] = True
    if valid is not None:
        sample &= valid.ravel() > 0
    inliers = sample
    for _ in range(FIT_ITERATIONS):
        coefficients = np.linalg.lstsq(terms[inliers], pixels[inliers], rcond=None)[0]
        residual = pixels - terms @ coefficients
        residual[:, 0] = np.minimum(residual[:, 0], 0)
        distance = np.linalg.norm(residual, axis=1)
        centre, spread = median_spread(distance[sample])
        inliers = sample & (distance < centre + 2.5 * spread)
        if inliers.sum() < terms.shape[1] * 10:
            break
    return distance.reshape(height, width).astype(np.float32)


def polynomial_terms(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)


def candidates(distance: np.ndarray, inpainted: np.ndarray) -> list[Candidate]:
    """Blobs clearly unlike the skin (above its noise by CANDIDATE_LEVEL_FACTOR spreads), large enough to
    be a lesion rather than a pore or a freckle, with their contrast to their own surroundings. Pixels
    `inpainted` (under hairs) are not evidence; the closing joins the parts of a lesion they cross."""
    distance = cv2.GaussianBlur(distance, (0, 0), CANDIDATE_SMOOTHING)
    centre, spread = median_spread(distance)
    level = max(CANDIDATE_LEVEL_FLOOR, centre + CANDIDATE_LEVEL_FACTOR * spread)
    seen = (distance > level) & (inpainted == 0)
    binary = cv2.morphologyEx(seen.astype(np.uint8), cv2.MORPH_OPEN, ellipse(3))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, ellipse(7))
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    smallest = MIN_CANDIDATE_SHARE * distance.size
    found = []
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        blob = labels == index
        if area < smallest or area < 0.25 * w * h:
            continue
        found.append(Candidate((int(x), int(y), int(x + w), int(y + h)), tuple(centroids[index]),
                               surround_contrast(distance, blob, (x, y, w, h))))
    return found


def surround_contrast(distance: np.ndarray, blob: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Median distance inside the blob minus that in a ring around it half its radius wide."""
    x, y, w, h = box
    ring_width = max(2, int(0.5 * np.sqrt(blob[y:y + h, x:x + w].sum() / np.pi)))
    y0, y1 = max(0, y - ring_width - 1), min(blob.shape[0], y + h + ring_width + 1)
    x0, x1 = max(0, x - ring_width - 1), min(blob.shape[1], x + w + ring_width + 1)
    inside = blob[y0:y1, x0:x1].astype(np.uint8)
    ring = cv2.dilate(inside, ellipse(2 * ring_width + 1)) > inside
    local = distance[y0:y1, x0:x1]
    return float(np.median(local[inside > 0]) - np.median(local[ring]))


def most_lesion_like(found: list[Candidate], point: tuple[float, float], size: tuple[int, int]) -> Candidate | None:
    """The candidate with the highest contrast to its surroundings, weighted by closeness to `point`
    (halved at a fifth of the view's diagonal from it)."""
    diagonal = float(np.hypot(*size))

    def score(candidate: Candidate) -> float:
        offset = np.hypot(candidate.centroid[0] - point[0], candidate.centroid[1] - point[1]) / diagonal
        return candidate.contrast / (1 + (offset / 0.2) ** 2)
    return max(found, key=score, default=None)


def nearest(found: list[Candidate], point: tuple[float, float], reach: float) -> Candidate | None:
    """The candidate whose box is nearest the point (0 when the point is inside it), ties to the nearer
    centroid; None when none is within `reach` pixels."""
    def gaps(candidate: Candidate) -> tuple[float, float]:
        x0, y0, x1, y1 = candidate.box
        outside = np.hypot(max(x0 - point[0], 0, point[0] - x1), max(y0 - point[1], 0, point[1] - y1))
        return float(outside), float(np.hypot(candidate.centroid[0] - point[0], candidate.centroid[1] - point[1]))
    best = min(found, key=gaps, default=None)
    return best if best is not None and gaps(best)[0] <= reach else None


def point_box(point: tuple[float, float], half: float) -> tuple[int, int, int, int]:
    return (int(point[0] - half), int(point[1] - half), int(np.ceil(point[0] + half)), int(np.ceil(point[1] + half)))


def crop_around(box: tuple[int, int, int, int], scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box (in located pixels) carried to the full image (`scale` full pixels per located pixel) and
    widened by its size on every side (at least 12 full pixels), clipped to `size`."""
    width, height = size
    x0, y0, x1, y1 = box
    pad = max(12 / scale, max(x1 - x0, y1 - y0))
    return (max(0, int((x0 - pad) * scale)), max(0, int((y0 - pad) * scale)),
            min(width, int(np.ceil((x1 + pad) * scale))), min(height, int(np.ceil((y1 + pad) * scale))))
