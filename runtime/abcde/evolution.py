"""E, evolution: register the previous visit's image to this one and compare the measurements."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.shape import region

REGISTRATION_SIDE = 256
MIN_CORRELATION = 0.75
GROWTH_AREA_RATIO = 1.2
SCALE_RANGE = (1 / 1.35, 1.35)  # follow-ups are taken at (about) the same magnification
MAX_ROTATION_DEG = 45.0
MIN_OUTLINE_IOU = 0.5


def register(prior_rgb: np.ndarray, current_rgb: np.ndarray, prior_mask: np.ndarray,
             current_mask: np.ndarray) -> dict:
    """Affine transform prior -> current: initialised from the two lesions' centroids, orientations and
    areas (both 180-degree readings of the axis, and a sweep for round lesions), refined by OpenCV's
    ECC maximisation; the candidate with the best correlation wins."""
    prior_region, current_region = region(prior_mask), region(current_mask)
    if prior_region is None or current_region is None:
        return {"registered": False, "reason": "no lesion found in one of the images"}
    prior_small, prior_factor = _gray(prior_rgb)
    current_small, current_factor = _gray(current_rgb)
    scale = np.sqrt(prior_region.area / current_region.area)
    turns = [0.0, np.pi] if current_region.eccentricity > 0.5 else list(np.radians(np.arange(0, 360, 30)))
    best = (-1.0, None)
    for turn in turns:
        angle = prior_region.orientation - current_region.orientation + turn
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre_current = np.array(current_region.centroid) * current_factor
        centre_prior = np.array(prior_region.centroid) * prior_factor
        rotation_small = rotation * prior_factor / current_factor
        warp = np.hstack([rotation_small, (centre_prior - rotation_small @ centre_current)[:, None]])
        try:
            correlation, warp = cv2.findTransformECC(current_small, prior_small, warp.astype(np.float32),
                                                     cv2.MOTION_AFFINE,
                                                     (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5),
                                                     None, 5)
        except cv2.error:
            continue
        if correlation > best[0]:
            best = (correlation, warp)
    correlation, warp = best
    if warp is None or correlation < MIN_CORRELATION:
        return {"registered": False, "reason": f"the images could not be aligned (best correlation "
                                               f"{max(correlation, 0):.2f} < {MIN_CORRELATION}): they may not "
                                               "show the same lesion"}
    current_to_prior = np.vstack([warp, [0, 0, 1]])
    to_small_current = np.diag([current_factor, current_factor, 1])
    from_small_prior = np.diag([1 / prior_factor, 1 / prior_factor, 1])
    matrix = np.linalg.inv(from_small_prior @ current_to_prior @ to_small_current)[:2]
    found = {"correlation": float(correlation), "scale": float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))),
             "rotation_deg": float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))),
             "shift_px": [float(matrix[0, 2]), float(matrix[1, 2])], "matrix": matrix.tolist(),
             "outline_iou": outline_iou(prior_mask, current_mask, matrix)}
    problems = implausible(found)
    if problems:
        reason = (f"the alignment found is not that of a follow-up ({'; '.join(problems)}): they may be "
                  "different lesions")
        return {"registered": False, **found, "reason": reason}
    return {"registered": True, **found}


def outline_iou(prior_mask: np.ndarray, current_mask: np.ndarray, matrix: np.ndarray) -> float:
    """Overlap (intersection over union) of the two lesion outlines once the prior is aligned."""
    height, width = current_mask.shape
    warped = cv2.warpAffine(prior_mask, matrix, (width, height), flags=cv2.INTER_NEAREST)
    union = np.count_nonzero(warped | current_mask)
    return float(np.count_nonzero(warped & current_mask) / union) if union else 0.0


def implausible(found: dict) -> list[str]:
    """Why an alignment cannot be a follow-up of the same lesion (empty when it can)."""
    problems = []
    if not SCALE_RANGE[0] <= found["scale"] <= SCALE_RANGE[1]:
        problems.append(f"scale {found['scale']:.2f} outside {SCALE_RANGE[0]:.2f}-{SCALE_RANGE[1]:.2f}")
    if abs(found["rotation_deg"]) > MAX_ROTATION_DEG:
        problems.append(f"rotation {round(found['rotation_deg']):d} deg beyond +-{MAX_ROTATION_DEG:.0f}")
    if found["outline_iou"] < MIN_OUTLINE_IOU:
        problems.append(f"lesion outlines overlap {found['outline_iou']:.2f} < {MIN_OUTLINE_IOU} after alignment")
    return problems


def _gray(image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    factor = REGISTRATION_SIDE / max(image_rgb.shape[:2])
    small = cv2.resize(image_rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (5, 5), 0).astype(np.float32), factor


def evolution(prior: dict, current: dict, registration: dict, prior_mask: np.ndarray,
              current_mask: np.ndarray) -> dict:
    """Changes between two analyses of the same lesion; no numbers when registration failed."""
    if not registration["registered"]:
        return {"registration": registration, "changes": None, "growth": None,
                "message": "registration failed: the two images could not be aligned, so no change is reported"}
    overlap = registration["outline_iou"]
    area_ratio = current["segmentation"]["area_px"] / max(prior["segmentation"]["area_px"], 1)
    changes = {
        "area_ratio": area_ratio,
        "linear_growth": float(np.sqrt(area_ratio)),
        "feret_ratio": current["diameter"]["feret_px"] / max(prior["diameter"]["feret_px"], 1e-9),
        "asymmetry_change": current["asymmetry"]["shape"] - prior["asymmetry"]["shape"],
        "compactness_change": current["border"]["compactness"] - prior["border"]["compactness"],
        "colors_added": sorted(set(current["color"]["present"]) - set(prior["color"]["present"])),
        "colors_lost": sorted(set(prior["color"]["present"]) - set(current["color"]["present"])),
        "overlap_after_registration": float(overlap),
    }
    return {"registration": registration, "changes": changes, "growth": bool(area_ratio > GROWTH_AREA_RATIO),
            "note": "sizes are compared in each image's own pixels, which assumes the same optics at both visits"}
