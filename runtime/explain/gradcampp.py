"""GradCAM++ over numpy arrays (the formula of pytorch-grad-cam's GradCAMPlusPlus).

alpha = g^2 / (2 g^2 + sum_ij(A) g^3 + eps), alpha = 0 where g = 0, eps = 1e-6;
class weights w_k = sum_ij relu(g) alpha; map = relu(sum_k w_k A_k), scaled to [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np

EPS = 1e-6


def gradcampp_maps(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """activations C x h x w; gradients K x C x h x w, or K x C x 1 x 1 when they are the same at every
    position (the last layer). Returns K raw maps (K x h x w), each scaled to [0, 1]."""
    activations = activations.astype(np.float32)
    gradients = gradients.astype(np.float32)
    height, width = activations.shape[-2:]
    squared = gradients**2
    sum_activations = activations.sum(axis=(1, 2))[None, :, None, None]
    alpha = squared / (2 * squared + sum_activations * squared * gradients + EPS)
    alpha = np.where(gradients != 0, alpha, 0.0)
    repeats = (height * width) / (gradients.shape[-2] * gradients.shape[-1])
    weights = (np.maximum(gradients, 0) * alpha).sum(axis=(2, 3)) * repeats
    maps = np.maximum(np.einsum("kc,chw->khw", weights, activations), 0)
    low = maps.min(axis=(1, 2), keepdims=True)
    return ((maps - low) / (1e-7 + (maps - low).max(axis=(1, 2), keepdims=True))).astype(np.float32)


def scale_01(values: np.ndarray) -> np.ndarray:
    values = values - values.min()
    return values / (1e-7 + values.max())


def upsample(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of one map to the image, rescaled to [0, 1] as pytorch-grad-cam does."""
    return scale_01(cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR))


def upsample_all(cams: np.ndarray, width: int, height: int) -> np.ndarray:
    """K x h x w maps -> K x height x width, each rescaled to [0, 1]."""
    return np.stack([upsample(cam, width, height) for cam in cams])
