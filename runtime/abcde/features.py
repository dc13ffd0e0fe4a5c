"""Numbers a dermatologist's reading of a lesion can be fitted to: asymmetry of shape, colour and lightness about
the principal axes, the lesion's colours in CIELAB relative to the skin around it, and the texture of dermoscopic
structures (dark lines and dots, radial lines at the rim). `rules.py` turns them into A, the colours and the
structures with decision rules fitted to PH2's dermatologists (`melanomanet/abcd_rules.py`)."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse
from runtime.abcde.criteria import colour_asymmetry, colours_present, shape_asymmetry
from runtime.abcde.shape import Region

PERCENTILES = (5, 25, 50, 75, 95)
FEATURE_SIDE = 200  # the view the features are measured on (long side, pixels): the segmentation's working size


def lesion_features(lab: np.ndarray, gray: np.ndarray, mask: np.ndarray, hairs: np.ndarray,
                    geometry: Region) -> dict[str, float]:
    """`lab` (CIELAB), `gray` (uint8), `mask` and `hairs` (0/1) of one view, `geometry` of the mask in it."""
    features = asymmetry_features(lab, mask, geometry)
    lesion = mask.astype(bool) & ~hairs.astype(bool)
    if np.count_nonzero(lesion) < 20:
        lesion = mask.astype(bool)
    skin = skin_colour(lab, mask)
    features.update(colour_features(lab, lesion, skin, mask))
    features.update(texture_features(gray, mask, lesion, geometry))
    return features


def asymmetry_features(lab: np.ndarray, mask: np.ndarray, geometry: Region) -> dict[str, float]:
    shape = shape_asymmetry(geometry)
    colour = colour_asymmetry(lab, mask, geometry)
    lightness = halves_difference(lab, mask, geometry)
    return {"shape_asym_max": max(shape), "shape_asym_min": min(shape), "colour_asym_max": max(colour),
            "colour_asym_min": min(colour), "lab_asym_max": max(lightness), "lab_asym_min": min(lightness),
            "solidity": geometry.solidity, "eccentricity": geometry.eccentricity}


def halves_difference(lab: np.ndarray, mask: np.ndarray, geometry: Region) -> list[float]:
    """Per principal axis: the CIELAB distance between the median colours of the lesion's two halves."""
    rows, columns = np.nonzero(mask)
    offsets = np.stack([columns - geometry.centroid[0], rows - geometry.centroid[1]], 1)
    pixels = lab[rows, columns]
    values = []
    for axis in geometry.axes:
        side = offsets @ np.array([-axis[1], axis[0]]) > 0
        values.append(0.0 if side.all() or not side.any() else
                      float(np.linalg.norm(np.median(pixels[side], 0) - np.median(pixels[~side], 0))))
    return values


def skin_colour(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median CIELAB colour of a ring of skin around the lesion (a typical skin colour when none is in view)."""
    ring = cv2.dilate(mask, ellipse(31)).astype(bool) & ~cv2.dilate(mask, ellipse(11)).astype(bool)
    return np.median(lab[ring], 0) if np.count_nonzero(ring) > 30 else np.array([70.0, 15.0, 20.0], np.float32)


def colour_features(lab: np.ndarray, lesion: np.ndarray, skin: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    pixels = lab[lesion]
    lightness, a, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    chroma, hue = np.hypot(a, b), np.degrees(np.arctan2(b, a))
    features = {}
    for name, values in (("L", lightness), ("a", a), ("b", b), ("C", chroma), ("h", hue)):
        features.update({f"{name}{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))})
    features.update({"skin_L": float(skin[0]), "skin_a": float(skin[1]), "skin_b": float(skin[2])})
    darker = lightness - skin[0]
    shares = {
        "black": lightness < 25, "very_dark": lightness < 35, "white": (darker > -5) & (chroma < 20),
        "blue_gray": (b < 8) & (lightness > 25) & (lightness < 70), "blue_over_red": (b - a < 0) & (lightness < 65),
        "red": (a > 25) & (a > 1.2 * b), "light_brown": (darker > -30) & (darker < -8) & (b > 12),
        "dark_brown": (lightness > 25) & (lightness < 45) & (b > 8), "lighter_than_skin": darker > 0,
        "bluish": b < skin[2] - 15, "bluish_light": (b < skin[2] - 12) & (lightness > 45),
        "redder": a > skin[1] + 12, "orange": (hue < 55) & (chroma > 40),
    }
    features.update({f"share_{name}": float(np.mean(where)) for name, where in shares.items()})
    for cut in (20, 30, 40):
        features[f"share_brown_darker{cut}"] = float(np.mean((darker < -cut) & (b > 0.6 * chroma)))
    _, coverage = colours_present(lab, lesion.astype(np.uint8))
    features.update({f"coverage_{name}": value for name, value in coverage.items()})
    grid = np.clip((lightness / 100 * 6).astype(int), 0, 5) * 3 + np.clip((chroma / 20).astype(int), 0, 2)
    features.update({f"lc_bin{i}": float(v) for i, v in enumerate(np.bincount(grid, minlength=18) / len(grid))})
    steps = np.clip(((darker + 60) / 15).astype(int), 0, 5)
    features.update({f"darker_bin{i}": float(v) for i, v in enumerate(np.bincount(steps, minlength=6) / len(steps))})
    features.update({"std_L": float(lightness.std()), "std_a": float(a.std()), "std_b": float(b.std())})
    features["area_share"] = float(mask.mean())
    return features


def texture_features(gray: np.ndarray, mask: np.ndarray, lesion: np.ndarray, geometry: Region) -> dict[str, float]:
    """Dark lines and dots (black-hat), bright spots (top-hat), and at the rim how much the dark lines run
    radially (streaks, pseudopods) rather than around."""
    dark = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, ellipse(7)).astype(np.float32)
    bright = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, ellipse(7)).astype(np.float32)
    features = {"dark_lines_mean": float(dark[lesion].mean()), "dark_lines_p90": float(np.percentile(dark[lesion], 90)),
                "bright_spots_mean": float(bright[lesion].mean())}
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    radius = np.sqrt(np.count_nonzero(mask) / np.pi)
    rim = (inside > 0) & (inside < 0.25 * radius)
    gradient_x = cv2.Sobel(dark, cv2.CV_32F, 1, 0, ksize=3)
    gradient_y = cv2.Sobel(dark, cv2.CV_32F, 0, 1, ksize=3)
    rows, columns = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    out_x, out_y = columns - geometry.centroid[0], rows - geometry.centroid[1]
    length = np.hypot(out_x, out_y) + 1e-6
    along = np.abs(gradient_x * out_x + gradient_y * out_y) / length
    across = np.abs(gradient_x * out_y - gradient_y * out_x) / length
    lines = rim & (dark > 10)
    features["rim_radial_ratio"] = float((across[lines].sum() + 1) / (along[lines].sum() + 1))
    features["rim_dark_lines"] = float(dark[rim].mean()) if rim.any() else 0.0
    return features


def feature_view(image_rgb: np.ndarray, mask: np.ndarray, found=None) -> tuple | None:
    """What `lesion_features` reads of the lesion `mask` (0/1 at the image's size): the FEATURE_SIDE view of the
    image in CIELAB with its artefacts inpainted, in gray, the mask and hair mask there and the mask's geometry;
    None when the mask is too small there. `found`: the segmentation (`runtime.abcde.segment.Segmentation`) that
    drew `mask` on this image, whose working copies at that size are taken rather than made again (the same
    numbers)."""
    from runtime.abcde.artifacts import remove_artifacts
    from runtime.abcde.palette import to_lab
    from runtime.abcde.segment import working_image, working_size
    from runtime.abcde.shape import region

    size = working_size(image_rgb.shape, FEATURE_SIDE)
    reusable = (found is not None and found.cleaned_lab is not None and found.working_rgb is not None
                and found.working_rgb.shape[1::-1] == size)
    view = found.working_rgb if reusable else working_image(image_rgb, FEATURE_SIDE)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    geometry = region(small_mask) if np.count_nonzero(small_mask) >= 20 else None
    if geometry is None:
        return None
    if reusable:
        cleaned_lab, hairs = found.cleaned_lab, found.hairs
    else:
        cleaned, _, hairs = remove_artifacts(view)
        cleaned_lab = to_lab(cleaned)
    return cleaned_lab, cv2.cvtColor(view, cv2.COLOR_RGB2GRAY), small_mask, hairs, geometry


def measure_features(image_rgb: np.ndarray, mask: np.ndarray, found=None) -> dict[str, float] | None:
    """The features of the lesion `mask` (0/1 at the image's size) on its `feature_view` (None when the mask is
    too small there); `found` as there."""
    view = feature_view(image_rgb, mask, found)
    return None if view is None else lesion_features(*view)
