"""The six dermoscopic colours (ABCD rule of dermoscopy), as sRGB references, and CIELAB, where colours
are compared."""

import cv2
import numpy as np

DERMOSCOPIC_COLOURS = {
    "white": (236, 232, 226),
    "red": (196, 48, 52),
    "light_brown": (176, 116, 66),
    "dark_brown": (98, 56, 32),
    "blue_gray": (104, 124, 148),
    "black": (28, 24, 26),
}
COLOUR_NAMES = tuple(DERMOSCOPIC_COLOURS)


def to_lab(image_rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0-100, a and b signed) from RGB uint8, through OpenCV's 8-bit conversion (faster here than
    its float path) rescaled to CIELAB units: L within 0.4, a and b within 1 unit."""
    lab = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    return cv2.transform(lab, LAB_FROM_8BIT)


# OpenCV's 8-bit Lab stores L * 255 / 100 and a, b offset by 128.
LAB_FROM_8BIT = np.array([[100 / 255, 0, 0, 0], [0, 1, 0, -128], [0, 0, 1, -128]], np.float32)
