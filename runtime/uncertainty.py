"""Monte Carlo dropout: masks drawn from a seed, and the entropy split of the T head samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def draw_mc_mask(samples: int, features: int, p: float, seed: int) -> np.ndarray:
    """T x C inverted-dropout keep-mask: 0 with probability p, else 1/(1-p). Same seed, same mask."""
    keep = np.random.default_rng(seed).random((samples, features)) >= p
    return (keep / (1.0 - p)).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def entropy(probabilities: np.ndarray, axis: int = -1) -> np.ndarray:
    return -np.sum(probabilities * np.log(np.clip(probabilities, 1e-12, None)), axis=axis)


@dataclass(frozen=True)
class Uncertainty:
    mean_probabilities: np.ndarray
    spread: np.ndarray
    predictive: float
    aleatoric: float
    epistemic: float
    mc_samples: int
    flagged: bool = False


def mc_uncertainty(mc_logits: np.ndarray) -> Uncertainty:
    """T x K logits of one image -> predictive entropy H(mean p) = aleatoric (mean of H(p_t)) + epistemic
    (mutual information), in nats. Whether it is flagged is the referral rule's call (`runtime.referral`)."""
    probabilities = softmax(mc_logits.astype(np.float64))
    mean = probabilities.mean(axis=0)
    predictive = float(entropy(mean))
    aleatoric = min(float(entropy(probabilities).mean()), predictive)
    return Uncertainty(mean_probabilities=mean, spread=probabilities.std(axis=0), predictive=predictive,
                       aleatoric=aleatoric, epistemic=predictive - aleatoric, mc_samples=int(mc_logits.shape[0]))
