"""Is an input like the colour dermoscopy the model was trained on? Warnings that refer the image for review.

Two checks: no colour at all (greyscale), and "not dermoscopy", a logistic regression on twelve thumbnail features
fitted by studies/domain_check.py on ../shared/data/real: dermoscopy (400 HAM10000, 456 ISIC 2017, 103 PH2 images)
against 109 PAD-UFES-20 smartphone photos. Five-fold cross-validated AUROC 0.971; at the threshold below, 0.8 %
of HAM10000, 0.9 % of ISIC 2017 and 2.9 % of PH2 images are flagged, and 72.5 % of the smartphone photos. A check
fitted on few clinical photos of one source: it catches most phone photos, not every image that is not
dermoscopy."""

from __future__ import annotations

import cv2
import numpy as np

# The 95th percentile of a pixel's channel spread (max - min, 0-255) below which an image counts as greyscale:
# a greyscale file replicated to RGB has 0 everywhere, JPEG noise a few units; skin in colour is well above 15.
GREYSCALE_CHROMA = 6
# Fitted by studies/domain_check.py (standardisation, logistic weights, and the score that flags 1 % of the
# dermoscopic images of its cross-validation).
MEAN = np.array([162.1295, 32.0184, 16.3597, 5.3791, 9.5035, 6.8472, 6.5908, 76.0815, 31.9736, 0.0357, 0.0119,
                 99.2458])
SCALE = np.array([21.6288, 14.4634, 9.5136, 2.1821, 9.8449, 2.9553, 68.9546, 30.6742, 13.6613, 0.0454, 0.0435,
                  41.7814])
WEIGHTS = np.array([-0.8226, -0.6801, -2.1913, 0.9068, 0.9178, -1.9631, 0.9925, 0.1956, -1.1928, 1.1612, 0.0134,
                    -0.0093])
BIAS = -2.8605
NOT_DERMOSCOPY_THRESHOLD = 1.9314


RADIUS = np.hypot(*(np.mgrid[0:64, 0:64] - 31.5)) / 45.25  # a thumbnail pixel's distance from the centre


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)


def domain_features(rgb: np.ndarray, small: np.ndarray | None = None) -> np.ndarray:
    """Twelve figures of a 64-px thumbnail (`small`, when already made): CIELAB means and spreads, the corners'
    darkness against the centre (a dermatoscope's vignette), saturation, edge density at 256 px, the dark share
    and the lightness range."""
    small = thumbnail(rgb) if small is None else small
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lightness, green_red, blue_yellow = lab[..., 0], lab[..., 1] - 128, lab[..., 2] - 128
    saturation = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    grey = cv2.cvtColor(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return np.array([lightness.mean(), lightness.std(), green_red.mean(), green_red.std(), blue_yellow.mean(),
                     blue_yellow.std(), lightness[RADIUS > 0.9].mean() - lightness[RADIUS < 0.35].mean(),
                     saturation.mean(), saturation.std(), cv2.Canny(grey, 50, 150).mean() / 255,
                     (lightness < 40).mean(), np.percentile(lightness, 95) - np.percentile(lightness, 5)])


GREYSCALE, NOT_DERMOSCOPY = "greyscale", "not_dermoscopy"


def domain_warnings(rgb: np.ndarray) -> list[dict]:
    """What the input-domain check found (empty: nothing): each finding's `kind` (GREYSCALE or NOT_DERMOSCOPY)
    and its plain-words `detail`."""
    small = thumbnail(rgb)
    greyscale_view = small if max(rgb.shape[:2]) > 64 else rgb
    spread = greyscale_view.max(axis=2).astype(np.int16) - greyscale_view.min(axis=2)
    if np.percentile(spread, 95) < GREYSCALE_CHROMA:
        return [{"kind": GREYSCALE, "detail": "the image has no colour (greyscale): the model was trained on colour "
                                              "dermoscopy, so its answer is not meaningful here"}]
    if not_dermoscopy_score(rgb, small) > NOT_DERMOSCOPY_THRESHOLD:
        return [{"kind": NOT_DERMOSCOPY, "detail": "the image does not look like dermoscopy (a clinical or phone "
                                                   "photo?): the model was trained on dermoscopic images, so its "
                                                   "answer may not hold"}]
    return []


def image_domain(warnings: list[dict]) -> str:
    """What kind of image the ABCD readings are taken on: "dermoscopy" unless a finding says otherwise."""
    return warnings[0]["kind"] if warnings else "dermoscopy"


def not_dermoscopy_score(rgb: np.ndarray, small: np.ndarray | None = None) -> float:
    """The check's logit: above NOT_DERMOSCOPY_THRESHOLD, the image is flagged as not dermoscopy."""
    return float((domain_features(rgb, small) - MEAN) / SCALE @ WEIGHTS + BIAS)
