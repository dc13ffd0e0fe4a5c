"""The ABCDE picture: outline, principal axes, maximum Feret diameter and the colours found."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.criteria import COLOUR_ASYMMETRY_THRESHOLD, SHAPE_ASYMMETRY_THRESHOLD
from runtime.abcde.palette import DERMOSCOPIC_COLOURS
from runtime.abcde.quality import centroid
from runtime.draw import outline, text

AXIS_ASYMMETRIC = (230, 60, 60)
AXIS_SYMMETRIC = (60, 200, 90)
FERET = (255, 215, 0)
PRIOR = (0, 200, 230)


def abcde_overlay(image: np.ndarray, analysis: dict, mask: np.ndarray | None, scale: float = 1.0,
                  colour_key: bool = True) -> np.ndarray:
    """The marks on `image`, whose pixels are `scale` times the analysis's (which are the original image's): a
    view downscaled for analysis and drawing has scale < 1. `mask` is at `image`'s size. `colour_key`: name the
    colours found in the image's corner (off where a legend beside the picture names them)."""
    drawn = image.copy()
    if mask is None or analysis.get("asymmetry") is None:
        unreliable = analysis.get("status") == "unreliable"
        text(drawn, "outline unreliable: ABCD withheld" if unreliable else "no lesion found", (10, 30), 0.8,
             (255, 255, 255), 2)
        return drawn
    thickness = max(2, round(max(image.shape[:2]) / 300))
    drawn = outline(drawn, mask, (255, 255, 255), thickness)
    asymmetry = analysis["asymmetry"]
    centre = np.array(asymmetry["centroid"]) * scale
    angle = np.radians(asymmetry["orientation_deg"])
    half = analysis["diameter"]["feret_px"] * scale / 2
    for index, direction in enumerate((np.array([np.cos(angle), np.sin(angle)]),
                                       np.array([-np.sin(angle), np.cos(angle)]))):
        asymmetric = (asymmetry["shape_axes"][index] > SHAPE_ASYMMETRY_THRESHOLD
                      or asymmetry["color_axes"][index] > COLOUR_ASYMMETRY_THRESHOLD)
        colour = AXIS_ASYMMETRIC if asymmetric else AXIS_SYMMETRIC
        start, end = centre - direction * half * 0.9, centre + direction * half * 0.9
        cv2.line(drawn, tuple(np.int32(start)), tuple(np.int32(end)), colour, thickness, cv2.LINE_AA)
    ends = np.int32(np.array(analysis["diameter"]["feret_endpoints"]) * scale)
    cv2.line(drawn, tuple(ends[0]), tuple(ends[1]), FERET, thickness, cv2.LINE_AA)
    for point in ends:
        cv2.circle(drawn, tuple(point), thickness * 2, FERET, -1, cv2.LINE_AA)
    if not colour_key:
        return drawn
    swatch = max(14, image.shape[0] // 18)
    for index, name in enumerate(analysis["color"]["present"]):
        top = 8 + index * (swatch + 6)
        cv2.rectangle(drawn, (8, top), (8 + swatch, top + swatch), DERMOSCOPIC_COLOURS[name], -1)
        cv2.rectangle(drawn, (8, top), (8 + swatch, top + swatch), (255, 255, 255), 1)
        text(drawn, name.replace("_", " "), (14 + swatch, top + swatch - 3), swatch / 30, (255, 255, 255), 1)
    return drawn


def change_lines(evolution: dict) -> list[str]:
    """The changes since the prior visit, one plain line each (or why none are reported)."""
    if evolution["changes"] is None:
        return ["not compared: " + evolution["registration"]["reason"]]
    changes, registration = evolution["changes"], evolution["registration"]
    lines = [f"area x{changes['area_ratio']:.2f} ({'growth' if evolution['growth'] else 'no growth'} by the "
             f"x1.2 rule), diameter x{changes['feret_ratio']:.2f}",
             f"asymmetry {changes['asymmetry_change']:+.2f}, compactness {changes['compactness_change']:+.2f}",
             f"colours added: {', '.join(changes['colors_added']) or 'none'}; lost: "
             f"{', '.join(changes['colors_lost']) or 'none'}",
             f"outlines overlap {changes['overlap_after_registration']:.0%} after the alignment (correlation "
             f"{registration['correlation']:.2f}, scale {registration['scale']:.2f}, rotation "
             f"{round(registration['rotation_deg']):d} deg)"]
    return lines


def line_key(canvas: np.ndarray, items: list[tuple[tuple, str]], origin: tuple[int, int], width: int) -> int:
    """A legend of coloured lines ((colour, label) each) from `origin`, wrapped at `width`; the y it ends at."""
    from runtime.draw import text_width

    (x, y), left = origin, origin[0]
    for colour, label in items:
        needed = 30 + text_width(label, 0.42) + 14
        if x + needed > left + width:
            x, y = left, y + 20
        cv2.line(canvas, (x, y - 4), (x + 24, y - 4), (120, 120, 120), 5, cv2.LINE_AA)
        cv2.line(canvas, (x + 1, y - 4), (x + 23, y - 4), colour, 3, cv2.LINE_AA)
        text(canvas, label, (x + 30, y), 0.42, (108, 117, 125))
        x += needed
    return y + 10


def without_scale(matrix: np.ndarray, prior_centre: tuple[float, float]) -> np.ndarray:
    """The alignment's rotation and placement without its scale (which absorbs the growth itself): the prior
    lesion's centre goes where the alignment puts it, at the prior's own size, as the area ratio assumes."""
    linear = matrix[:, :2]
    rotation = linear / np.sqrt(abs(np.linalg.det(linear)))
    centre = np.array(prior_centre)
    shift = linear @ centre + matrix[:, 2] - rotation @ centre
    return np.hstack([rotation, shift[:, None]])


def evolution_overlay(prior_rgb: np.ndarray, current_picture: np.ndarray, prior_mask: np.ndarray,
                      current_mask: np.ndarray, evolution: dict) -> np.ndarray:
    """Prior (aligned to the current image when registration succeeded) | current with both outlines
    (prior cyan, current white) | the list of changes."""
    from runtime.draw import fit, paragraph

    height, width = current_mask.shape
    registered = evolution["changes"] is not None
    if registered:
        matrix = without_scale(np.array(evolution["registration"]["matrix"]), centroid(prior_mask))
        prior_view = cv2.warpAffine(prior_rgb, matrix, (width, height), borderValue=(255, 255, 255))
        prior_outline = cv2.warpAffine(prior_mask, matrix, (width, height), flags=cv2.INTER_NEAREST)
    else:
        prior_view, prior_outline = prior_rgb, None
    thickness = max(2, round(max(height, width) / 300))
    both = current_picture if prior_outline is None else outline(current_picture, prior_outline, PRIOR, thickness)
    tile_w, tile_h, gap = 420, 320, 12
    canvas = np.full((tile_h + 110, 3 * tile_w + 4 * gap, 3), 255, np.uint8)
    captions = ["prior visit" + (", placed and turned like the current image, at its own size" if registered
                                 else " (not aligned)"),
                "current visit: outline now (white)" + (", prior at its own size (cyan): the gap between them is "
                                                        "the change" if registered else "")]
    for index, (picture, caption) in enumerate(zip((prior_view, both), captions)):
        left = gap + index * (tile_w + gap)
        canvas[gap:gap + tile_h, left:left + tile_w] = fit(picture, tile_w, tile_h)
        paragraph(canvas, caption, (left, gap + tile_h + 20), tile_w, 0.45, (108, 117, 125))
    line_key(canvas, [((255, 255, 255), "outline now"), (PRIOR, "prior outline"),
                      (AXIS_ASYMMETRIC, "axis the lesion is asymmetric about"),
                      (AXIS_SYMMETRIC, "axis it is symmetric about"), (FERET, "maximum Feret diameter")],
             (gap, tile_h + 86), 2 * tile_w + gap)
    y, left = gap + 20, gap + 2 * (tile_w + gap)
    y = paragraph(canvas, "Evolution (E)", (left, y), tile_w, 0.6, (33, 37, 41), 2)
    for line in change_lines(evolution):
        y = paragraph(canvas, line, (left, y + 4), tile_w, 0.45, (33, 37, 41))
    return canvas
