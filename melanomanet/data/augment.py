"""Training augmentation on RGB uint8 arrays: flips, rotation, a slight zoom-out, colour jitter.

The image is first squashed to a square, as `preprocess` squashes it, so that rotations act on the geometry the
network sees and a rotated lesion stays in the frame; scale never exceeds 1 and shifts stay small, so no
augmentation cuts a lesion that fills the field off at the border."""

from __future__ import annotations

import cv2
import numpy as np


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = max(image.shape[:2])
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    image = random_affine(np.ascontiguousarray(image), rng)
    return colour_jitter(image, rng)


def random_affine(image: np.ndarray, rng: np.random.Generator, max_degrees: float = 180,
                  scale=(0.8, 1.0), max_shift: float = 0.05) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-max_degrees, max_degrees),
                                     rng.uniform(*scale))
    matrix[:, 2] += rng.uniform(-max_shift, max_shift, 2) * (width, height)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, brightness=0.2, contrast=0.2,
                  saturation=0.2, hue_degrees=5.0) -> np.ndarray:
    pixels = image.astype(np.float32)
    pixels *= rng.uniform(1 - brightness, 1 + brightness)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    hsv = cv2.cvtColor(np.clip(pixels, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue_degrees, hue_degrees) / 2) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - saturation, 1 + saturation), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
