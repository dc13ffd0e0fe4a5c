"""Region geometry of a binary mask: moments, principal axes, contour, perimeter, convex hull, Feret."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class Region:
    area: float
    centroid: tuple[float, float]  # (x, y)
    orientation: float  # radians: angle of the major axis from the x axis, image coordinates (y down)
    major_axis_length: float
    minor_axis_length: float
    eccentricity: float
    solidity: float
    contour: np.ndarray  # K x 2 boundary polygon through pixel centres (straight runs kept as their ends)
    hull: np.ndarray

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (x, y) of the major and minor principal axes."""
        major = np.array([np.cos(self.orientation), np.sin(self.orientation)])
        return major, np.array([-major[1], major[0]])

    def scaled(self, factor: float) -> Region:
        """The same region on an image resized by `factor` (areas scale by its square)."""
        centroid = (self.centroid[0] * factor, self.centroid[1] * factor)
        return replace(self, area=self.area * factor**2, centroid=centroid,
                       major_axis_length=self.major_axis_length * factor,
                       minor_axis_length=self.minor_axis_length * factor,
                       contour=self.contour * factor, hull=self.hull * factor)


def largest_contour(mask: np.ndarray) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea).reshape(-1, 2)


def region(mask: np.ndarray) -> Region | None:
    """Second-moment geometry of the largest region, holes filled (as `skimage.measure.regionprops`
    defines it)."""
    contour = largest_contour((mask > 0).astype(np.uint8))
    return None if contour is None else region_inside(contour)


def region_inside(contour: np.ndarray) -> Region | None:
    """The geometry of the pixels inside an outer contour (K x 2, as `cv2.findContours` gives it)."""
    x, y, width, height = cv2.boundingRect(contour)
    filled = np.zeros((height, width), np.uint8)
    cv2.drawContours(filled, [contour.reshape(-1, 1, 2)], -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
    moments = cv2.moments(filled, binaryImage=True)
    if moments["m00"] == 0:
        return None
    area = moments["m00"]
    cx, cy = x + moments["m10"] / area, y + moments["m01"] / area
    # Central moments normalised by area, with the 1/12 pixel self-inertia skimage includes.
    mu20, mu02, mu11 = moments["mu20"] / area + 1 / 12, moments["mu02"] / area + 1 / 12, moments["mu11"] / area
    common = np.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    first, second = (mu20 + mu02) / 2 + common, (mu20 + mu02) / 2 - common
    orientation = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)
    hull = cv2.convexHull(contour).reshape(-1, 2)
    filled[:] = 0
    cv2.fillPoly(filled, [hull.astype(np.int32) - np.array([x, y], np.int32)], 1)
    hull_area = cv2.countNonZero(filled)
    return Region(
        area=float(area), centroid=(float(cx), float(cy)), orientation=float(orientation),
        major_axis_length=float(4 * np.sqrt(max(first, 0))), minor_axis_length=float(4 * np.sqrt(max(second, 0))),
        eccentricity=float(np.sqrt(1 - second / first)) if first > 0 else 0.0,
        solidity=float(area / hull_area) if hull_area else 1.0, contour=contour, hull=hull,
    )


def perimeter(contour: np.ndarray) -> float:
    """Length of the boundary simplified to within 1 px (Douglas-Peucker), which removes the digitisation
    staircase: 1.00-1.01 x the true length for digitised discs of radius >= 50 px, exact for polygons."""
    simplified = cv2.approxPolyDP(contour.astype(np.float32).reshape(-1, 1, 2), 1.0, True)
    return float(cv2.arcLength(simplified, True))


def feret_diameter(hull: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest distance between two points of the convex hull, with the two end points."""
    points = hull.astype(np.float64)
    if len(points) < 2:
        return 0.0, np.vstack([points, points])[:2]
    distances = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2)
    first, second = np.unravel_index(np.argmax(distances), distances.shape)
    return float(distances[first, second]), points[[first, second]]


def reflect(points: np.ndarray, centre: tuple[float, float], axis: np.ndarray) -> np.ndarray:
    """Mirror points (x, y) about the line through `centre` along the unit vector `axis`."""
    offset = points - np.asarray(centre)
    along = offset @ axis
    return np.asarray(centre) + 2 * along[:, None] * axis[None, :] - offset
