"""The ABCD(E) analysis of one image: segmentation, then A, B, C, D (and E given a prior image)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from runtime.abcde.criteria import (
    COLOUR_ASYMMETRY_THRESHOLD,
    SHAPE_ASYMMETRY_THRESHOLD,
    border_cutoff_segments,
    colour_asymmetry,
    colours_present,
    compactness,
    diameters,
    shape_asymmetry,
)
from runtime.abcde.features import measure_features
from runtime.abcde.palette import to_lab
from runtime.abcde.quality import centroid
from runtime.abcde.rules import COLOURS, STRUCTURES, readings, reliable_colours, total_dermoscopy_score
from runtime.abcde.segment import Segmentation, segment, working_image
from runtime.abcde.shape import region, region_inside
from runtime.abcde.skin import skin_tone
from runtime.options import check_mm_per_px, check_position

PARTIAL_SCORE_NOTE = ("1.3 x asymmetry points + 0.1 x border cut-off segments + 0.5 x colour count: the A, B and C "
                      "terms of the Total Dermoscopy Score, the count taking only the colours measured reliably "
                      "(color.not_measured leaves it a lower bound). Its D term counts dermoscopic structures, which "
                      "are not measured here, so this is not a TDS and must not be read against TDS cut-offs.")


MAX_ANALYSIS_SIDE = 2048
NOT_MEASURED = {"asymmetry": None, "border": None, "color": None, "diameter": None, "partial_score": None,
                "structures": None, "tds": None, "skin": None}
DERMOSCOPY = "dermoscopy"
# Why the dermoscopic readings (the six colours, the structures, the scores of Stolz's rule) are not taken, by
# the image's domain as `runtime.domain` names it: outline, asymmetry, border and diameter still are.
NOT_APPLICABLE = {
    "not_dermoscopy": "the image does not look like dermoscopy: dermoscopic colours and structures are seen only "
                      "through a dermatoscope, so none is read from a clinical or phone photo",
    "greyscale": "the image has no colour: colours cannot be read, and the fitted readings need them",
}


@dataclass(frozen=True)
class Analysis:
    """The ABCD measurements (JSON-ready) and the lesion mask they were taken on (None: no lesion found)."""

    measurements: dict
    mask: np.ndarray | None


def analyze(image_rgb: np.ndarray, mm_per_px: float | None = None, mask: np.ndarray | None = None,
            lesion_at: tuple[float, float] | None = None) -> dict:
    """Segment (unless a mask is given; near `lesion_at`, x and y in pixels, when given) and measure; keys:
    status ("measured", "unreliable": the outline failed its quality check, or "no_lesion"), reasons,
    segmentation, asymmetry, border, color, diameter, partial_score (A-D None unless measured). Images
    larger than MAX_ANALYSIS_SIDE are measured downscaled, sizes in original pixels."""
    return analyze_with_mask(image_rgb, mm_per_px, mask, lesion_at).measurements


def analyze_with_mask(image_rgb: np.ndarray, mm_per_px: float | None = None, mask: np.ndarray | None = None,
                      lesion_at: tuple[float, float] | None = None, domain: str = DERMOSCOPY) -> Analysis:
    """`analyze`, with the lesion mask at the image's size (None unless measured); `domain` as `analyze_view`."""
    mm_per_px, lesion_at = check_mm_per_px(mm_per_px, "mm_per_px"), check_position(lesion_at, "lesion_at")
    if mask is not None:
        return _measure(image_rgb, mm_per_px, mask, domain=domain)
    view, factor = bounded_view(image_rgb)
    found = analyze_view(view, factor, mm_per_px, lesion_at, domain)
    if factor == 1.0 or found.mask is None:
        return found
    height, width = image_rgb.shape[:2]
    return replace(found, mask=cv2.resize(found.mask, (width, height), interpolation=cv2.INTER_NEAREST))


def checked_domain(image_rgb: np.ndarray) -> str:
    """The image's domain as the input-domain check finds it (`runtime.domain`), on its bounded view."""
    from runtime.domain import domain_warnings, image_domain

    return image_domain(domain_warnings(bounded_view(image_rgb)[0]))


def bounded_view(image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The image downscaled to at most MAX_ANALYSIS_SIDE pixels, and the factor applied (1.0: unchanged)."""
    factor = min(1.0, MAX_ANALYSIS_SIDE / max(image_rgb.shape[:2]))
    return (image_rgb if factor == 1.0 else downscale(image_rgb, factor)), factor


def fitted_rule_features(image_rgb: np.ndarray) -> dict[str, float] | None:
    """The features the fitted rules read, measured as `analyze` measures them (on the bounded view, the runtime's
    own outline); None when that outline is withheld or no lesion is found. What `mnet fit-abcd` fits to."""
    view, _ = bounded_view(image_rgb)
    found = segment(view)
    if not (found.found and found.quality.reliable):
        return None
    return measure_features(view, found.mask, found)


def analyze_view(view: np.ndarray, factor: float, mm_per_px: float | None,
                 lesion_at: tuple[float, float] | None = None, domain: str = DERMOSCOPY) -> Analysis:
    """Analyse a view made by `bounded_view`: sizes in original pixels, the mask at the view's size. `domain`
    (`runtime.domain.image_domain`): on an image that is not dermoscopy the dermoscopic readings are
    `not_applicable` (NOT_APPLICABLE)."""
    at = None if lesion_at is None else (lesion_at[0] * factor, lesion_at[1] * factor)
    found = _measure(view, mm_per_px / factor if mm_per_px else None, lesion_at=at, domain=domain)
    if factor == 1.0:
        return found
    return replace(found, measurements=to_original_pixels(found.measurements, factor, mm_per_px))


def _measure(image_rgb: np.ndarray, mm_per_px: float | None, mask: np.ndarray | None = None,
             lesion_at: tuple[float, float] | None = None, domain: str = DERMOSCOPY) -> Analysis:
    given = mask is not None
    found = segment(image_rgb, lesion_at) if not given else Segmentation((mask > 0).astype(np.uint8))
    result = {"domain": domain,
              "segmentation": {"area_px": found.area_px, "coverage": found.area_px / found.mask.size,
                               "flags": list(found.flags), **quality_fields(found, given)}}
    geometry = None
    if found.area_px >= 9:
        geometry = region(found.mask) if found.contour is None else region_inside(found.contour)
    if geometry is None or not found.found:
        if "no_lesion" not in result["segmentation"]["flags"]:
            result["segmentation"]["flags"].append("no_lesion")
        return Analysis({"status": "no_lesion", "reasons": ["no lesion found in the image"], **result,
                         **NOT_MEASURED}, None)
    if not given and not found.quality.reliable:
        suggested = pointing_helps(image_rgb, found.mask) if lesion_at is None else None
        return Analysis({"status": "unreliable", "reasons": list(found.quality.reasons), **result,
                         "suggested_lesion_at": suggested, **NOT_MEASURED}, None)
    lab, small_mask = working_copies(image_rgb, found)
    small_geometry = geometry.scaled(small_mask.shape[1] / found.mask.shape[1])
    shape_axes = shape_asymmetry(geometry)
    colour_axes = colour_asymmetry(lab, small_mask, small_geometry)
    geometric_points = sum(s > SHAPE_ASYMMETRY_THRESHOLD or c > COLOUR_ASYMMETRY_THRESHOLD
                           for s, c in zip(shape_axes, colour_axes))
    cutoffs = border_cutoff_segments(lab[..., 0], small_mask, small_geometry)
    diameter = diameters(geometry, mm_per_px)
    diameter["lower_bound"] = "touches_border" in found.flags
    dermoscopic = domain == DERMOSCOPY
    features = measure_features(image_rgb, found.mask, found) if dermoscopic else None
    fitted = readings(features) if features is not None else None
    points = fitted["asymmetry"] if fitted else int(geometric_points)
    result.update({
        "status": "measured",
        "reasons": [],
        "asymmetry": {"shape_axes": shape_axes, "shape": float(np.mean(shape_axes)), "color_axes": colour_axes,
                      "color": float(np.mean(colour_axes)), "points": int(points),
                      "geometric_points": int(geometric_points), "fitted": fitted is not None,
                      "orientation_deg": float(np.degrees(geometry.orientation)),
                      "centroid": list(geometry.centroid)},
        "border": {"compactness": compactness(geometry), "cutoff_segments": cutoffs},
        "diameter": diameter,
        "skin": skin_tone(image_rgb, found.mask),
    })
    if not dermoscopic:
        reason = NOT_APPLICABLE[domain]
        result.update({"color": {"status": "not_applicable", "reason": reason, "present": [], "count": None,
                                 "not_measured": list(COLOURS), "coverage": {}, "reference_present": []},
                       "structures": {"status": "not_applicable", "reason": reason, "present": [], "measured": [],
                                      "not_measured": list(STRUCTURES)},
                       "partial_score": None, "tds": None})
        return Analysis(result, found.mask)
    hairs = found.hairs if found.hairs is not None and found.hairs.shape == small_mask.shape else 0
    reference_present, coverage = colours_present(lab, small_mask & (1 - hairs))
    reliable = reliable_colours()
    present = fitted["colours"] if fitted else [name for name in reference_present if name in reliable]
    structures = fitted["structures"] if fitted else {}
    result.update({
        "color": {"status": "measured", "present": present, "count": len(present),
                  "not_measured": [name for name in COLOURS if name not in reliable], "coverage": coverage,
                  "reference_present": reference_present},
        "partial_score": {"value": round(1.3 * points + 0.1 * cutoffs + 0.5 * len(present), 2),
                          "note": PARTIAL_SCORE_NOTE},
        "structures": {"status": "measured", "present": [name for name, seen in structures.items() if seen],
                       "measured": list(structures), "not_measured": fitted["not_shown"] if fitted else []},
        "tds": total_dermoscopy_score(points, cutoffs, len(present), structures),
    })
    return Analysis(result, found.mask)


def pointing_helps(image_rgb: np.ndarray, failed: np.ndarray) -> list[float] | None:
    """Where to point `--lesion-at` (x, y) so that the outline passes its check, when pointing at the failed
    outline's centre does; None when it does not (then pointing is no advice worth giving)."""
    point = centroid(failed)
    retried = segment(image_rgb, point)
    return [round(point[0], 1), round(point[1], 1)] if retried.found and retried.quality.reliable else None


def quality_fields(found: Segmentation, given: bool) -> dict:
    """The outline's quality figures (none for a mask given by the caller)."""
    if given:
        return {"mask": "given"}
    quality = found.quality
    method = "located in a crop" if found.located else "learned" if found.learned else "whole view"
    return {"mask": method, "segmenter": found.segmenter, "edge_step": round(quality.score, 2),
            "skin_noise": round(quality.noise, 2), "weak_sectors": quality.weak_sectors,
            "border_share": round(quality.border_share, 3),
            **({} if quality.unsure_share is None else {"unsure_share": round(quality.unsure_share, 3)})}


def downscale(image_rgb: np.ndarray, factor: float) -> np.ndarray:
    height, width = image_rgb.shape[:2]
    return cv2.resize(image_rgb, (max(1, round(width * factor)), max(1, round(height * factor))),
                      interpolation=cv2.INTER_AREA)


def to_original_pixels(result: dict, factor: float, mm_per_px: float | None) -> dict:
    """Express the pixel measurements of an analysis run on an image downscaled by `factor` in pixels
    of the original image (the mask stays at the analysed size)."""
    result["segmentation"]["area_px"] = round(result["segmentation"]["area_px"] / factor**2)
    result["segmentation"]["analysis_scale"] = factor
    if result.get("suggested_lesion_at"):
        result["suggested_lesion_at"] = [round(c / factor, 1) for c in result["suggested_lesion_at"]]
    if result.get("diameter"):
        diameter = result["diameter"]
        for key in ("feret_px", "equivalent_px"):
            diameter[key] /= factor
        diameter["feret_endpoints"] = (np.array(diameter["feret_endpoints"]) / factor).tolist()
        diameter["mm_per_px"] = mm_per_px
        result["asymmetry"]["centroid"] = [c / factor for c in result["asymmetry"]["centroid"]]
    return result


def working_copies(image_rgb: np.ndarray, found: Segmentation) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB image and mask at the segmentation's working resolution, where colour and border are
    measured (shape and size on the full-resolution mask)."""
    lab = found.working_lab if found.working_lab is not None else to_lab(working_image(image_rgb))
    if found.working_mask is not None:
        return lab, found.working_mask
    if lab.shape[:2] == found.mask.shape:
        return lab, found.mask
    return lab, cv2.resize(found.mask, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
