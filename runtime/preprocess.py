"""Image -> network input. Training, export verification and the runtime all call `preprocess`."""

from __future__ import annotations

import cv2
import numpy as np

from runtime.manifest import Preprocessing


def preprocess(image_rgb: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """RGB uint8 H x W x 3 -> normalised float32 3 x S x S: (x / 255 - mean) / std, as one multiply-add per
    channel written straight into the planar output (numpy broadcasting over a trailing axis of 3 is slow)."""
    resized = resize(image_rgb, spec.image_size, spec.interpolation)
    std = np.asarray(spec.std, np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-np.asarray(spec.mean, np.float64) / std).astype(np.float32)
    planar = np.empty((3, *resized.shape[:2]), np.float32)
    for channel in range(3):
        np.multiply(resized[..., channel], scale[channel], out=planar[channel], dtype=np.float32)
        planar[channel] += offset[channel]
    return planar


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
    """Pillow's own `Image.resize(..., BILINEAR)` (a triangle filter widened by the scale factor), which
    torchvision's `Resize` calls on PIL images: bit-exact with what the reference trained on, by construction."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image_rgb)).resize((width, height), Image.BILINEAR))
