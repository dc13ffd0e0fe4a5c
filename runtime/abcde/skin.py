"""The skin around a lesion as the Individual Typology Angle (ITA, Chardon et al. 1991): ITA = arctan((L* - 50) / b*)
in degrees, from the median CIELAB colour of a ring of skin outside the lesion's outline, with the six conventional
bands (Del Bino et al.). Under a dermatoscope's own light it approximates the skin's tone; it is what a fairness
table can be stratified by where no Fitzpatrick type was recorded."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.abcde.artifacts import ellipse

# Lower bounds (degrees) of the bands, lightest first; below the last: dark.
ITA_BANDS = ((55.0, "very light"), (41.0, "light"), (28.0, "intermediate"), (10.0, "tan"), (-30.0, "brown"))
DARK = "dark"
MIN_RING_PIXELS = 200
MIN_YELLOWNESS = 1.0  # b* below which the angle says nothing (a grey image has b* = 0)
RING_SIDE = 256
SKIN_ITA_NOTE = ("ITA of a ring of skin around the outline, under the image's own light: an approximation of the "
                 "skin's tone, not a Fitzpatrick type")


def ita_band(ita_deg: float) -> str:
    return next((name for low, name in ITA_BANDS if ita_deg > low), DARK)


def skin_tone(image_rgb: np.ndarray, mask: np.ndarray) -> dict | None:
    """ITA of the skin around the lesion `mask` (0/1 at the image's size): a ring from 1/20 to 1/6 of the image's
    long side outside the outline, inside the image, measured at RING_SIDE pixels; None when too little skin is
    in view or b* is below MIN_YELLOWNESS (no yellowness to measure an angle against)."""
    height, width = image_rgb.shape[:2]
    scale = min(1.0, RING_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    side = max(size)
    near = cv2.dilate(small_mask, ellipse(max(3, side // 20 | 1)))
    far = cv2.dilate(small_mask, ellipse(max(5, side // 6 | 1)))
    ring = (far > 0) & (near == 0)
    if np.count_nonzero(ring) < MIN_RING_PIXELS:
        return None
    # OpenCV's float conversion: exact CIELAB (the 8-bit one rounds b* by up to a unit, a degree of ITA on dark skin)
    lab = cv2.cvtColor((small[ring][None] / 255).astype(np.float32), cv2.COLOR_RGB2LAB)[0]
    lightness, _, yellowness = np.median(lab, axis=0)
    if yellowness < MIN_YELLOWNESS:
        return None
    ita = float(np.degrees(np.arctan((lightness - 50) / yellowness)))
    return {"ita_deg": round(ita, 1), "band": ita_band(ita), "lightness": round(float(lightness), 1),
            "yellowness": round(float(yellowness), 1), "note": SKIN_ITA_NOTE}
