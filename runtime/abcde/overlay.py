"""The ABCDE picture: outline, principal axes, maximum Feret diameter and the colours found."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.palette import DERMOSCOPIC_COLOURS
from runtime.draw import outline, text


def abcde_overlay(image: np.ndarray, analysis: dict, mask: np.ndarray | None) -> np.ndarray:
    drawn = image.copy()
    if mask is None or analysis.get("asymmetry") is None:
        text(drawn, "no lesion found", (10, 30), 0.8, (255, 255, 255), 2)
        return drawn
    thickness = max(2, round(max(image.shape[:2]) / 300))
    drawn = outline(drawn, mask, (255, 255, 255), thickness)
    asymmetry = analysis["asymmetry"]
    centre = np.array(asymmetry["centroid"])
    angle = np.radians(asymmetry["orientation_deg"])
    half = analysis["diameter"]["feret_px"] / 2
    for index, direction in enumerate((np.array([np.cos(angle), np.sin(angle)]),
                                       np.array([-np.sin(angle), np.cos(angle)]))):
        value = asymmetry["shape_axes"][index]
        colour = (230, 60, 60) if value > 0.1 else (60, 200, 90)
        start, end = centre - direction * half * 0.9, centre + direction * half * 0.9
        cv2.line(drawn, tuple(np.int32(start)), tuple(np.int32(end)), colour, thickness, cv2.LINE_AA)
    ends = np.int32(analysis["diameter"]["feret_endpoints"])
    cv2.line(drawn, tuple(ends[0]), tuple(ends[1]), (255, 215, 0), thickness, cv2.LINE_AA)
    for point in ends:
        cv2.circle(drawn, tuple(point), thickness * 2, (255, 215, 0), -1, cv2.LINE_AA)
    swatch = max(14, image.shape[0] // 18)
    for index, name in enumerate(analysis["color"]["present"]):
        top = 8 + index * (swatch + 6)
        cv2.rectangle(drawn, (8, top), (8 + swatch, top + swatch), DERMOSCOPIC_COLOURS[name], -1)
        cv2.rectangle(drawn, (8, top), (8 + swatch, top + swatch), (255, 255, 255), 1)
        text(drawn, name.replace("_", " "), (14 + swatch, top + swatch - 3), swatch / 30, (255, 255, 255), 1)
    return drawn
