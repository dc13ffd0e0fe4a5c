"""Small OpenCV drawing helpers shared by the panel and the ABCDE overlay (RGB images)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RED = (200, 35, 51)
GREEN = (25, 135, 84)
AMBER = (230, 150, 0)
BLUE = (13, 110, 253)


def text(canvas, value: str, origin, scale=0.5, colour=INK, thickness=1):
    cv2.putText(canvas, value, (int(origin[0]), int(origin[1])), FONT, scale, colour, thickness, cv2.LINE_AA)


@lru_cache(maxsize=8192)
def text_width(value: str, scale=0.5, thickness=1) -> int:
    """Measured once per run: most of a panel's texts (legends, captions, class names) recur on every panel."""
    return cv2.getTextSize(value, FONT, scale, thickness)[0][0]


def wrap(value: str, width: int, scale=0.5, thickness=1) -> list[str]:
    """Greedy word wrap to lines at most `width` pixels wide; a word wider than that is cut between characters."""
    lines: list[str] = []
    current = ""
    for word in value.split(" "):
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, scale, thickness) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while text_width(current, scale, thickness) > width and len(current) > 1:
            cut = 1
            while cut + 1 < len(current) and text_width(current[:cut + 1], scale, thickness) <= width:
                cut += 1
            lines.append(current[:cut])
            current = current[cut:]
    return lines + [current] if current or not lines else lines


def paragraph(canvas, value: str, origin, width: int, scale=0.5, colour=INK, thickness=1, leading=None) -> int:
    """Draw `value` wrapped to `width` from `origin` (the first baseline); return the baseline after it."""
    leading = leading or int(34 * scale) + 4
    x, y = int(origin[0]), int(origin[1])
    for line in wrap(value, width, scale, thickness):
        text(canvas, line, (x, y), scale, colour, thickness)
        y += leading
    return y


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to fit inside width x height, centred on a white tile."""
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    tile = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    tile[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return tile


def heat_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    coloured = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * np.clip(heatmap, 0, 1)), cv2.COLORMAP_JET),
                            cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, coloured, alpha, 0)


def outline(image: np.ndarray, mask: np.ndarray, colour=(255, 255, 255), thickness: int = 2) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    drawn = image.copy()
    cv2.drawContours(drawn, contours, -1, colour, thickness, cv2.LINE_AA)
    return drawn


def banner(canvas, value: str, top: int, colour, height: int = 30):
    cv2.rectangle(canvas, (0, top), (canvas.shape[1], top + height), colour, -1)
    text(canvas, value, (14, top + height - 10), 0.6, (255, 255, 255), 2)
