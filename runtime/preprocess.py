"""Image -> network input. Training, export verification and the runtime all call `preprocess`."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from runtime.manifest import Preprocessing


def preprocess(image_rgb: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """RGB uint8 H x W x 3 -> normalised float32 3 x S x S."""
    resized = resize(image_rgb, spec.image_size, spec.interpolation)
    scaled = resized.astype(np.float32) * np.float32(1.0 / 255.0)
    normalised = (scaled - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess_batch(images: list[np.ndarray], spec: Preprocessing) -> np.ndarray:
    return np.stack([preprocess(image, spec) for image in images])


def resize(image_rgb: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """Squash the whole image to size x size (no crop), as the MelanomaNet reference does."""
    if interpolation == "area":
        return cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA)
    if interpolation == "bilinear":
        return cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return resize_antialiased(image_rgb, size, size)


def resize_antialiased(image_rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resampling with a triangle filter widened by the scale factor, as Pillow's
    `Image.resize(..., BILINEAR)` does (which torchvision's `Resize` calls on PIL images):
    horizontal pass first, each pass rounded to uint8."""
    in_height, in_width = image_rgb.shape[:2]
    index, weight = _triangle_taps(in_width, width)
    horizontal = _apply_taps(image_rgb, index, weight, axis=1)
    index, weight = _triangle_taps(in_height, height)
    return _apply_taps(horizontal, index, weight, axis=0)


def _apply_taps(image: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    gathered = np.take(image, index, axis=axis).astype(np.float32)
    if axis == 1:
        out = np.einsum("hotc,ot->hoc", gathered, weight)
    else:
        out = np.einsum("otwc,ot->owc", gathered, weight)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _triangle_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = in_size / out_size
    support = max(scale, 1.0)
    taps = int(np.ceil(support)) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.floor(centers - support + 0.5).astype(np.int64)
    index = first[:, None] + np.arange(taps)[None, :]
    distance = (index + 0.5 - centers[:, None]) / support
    weight = np.clip(1.0 - np.abs(distance), 0.0, None)
    weight[(index < 0) | (index >= in_size)] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    return np.clip(index, 0, in_size - 1), weight.astype(np.float32)
