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


def decompose(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MC softmax samples (T x K for one image, or N x T x K) -> predictive entropy H(mean p), aleatoric (mean of
    H(p_t), at most the predictive) and epistemic (their difference, the mutual information), in nats."""
    predictive = entropy(probabilities.mean(axis=-2))
    aleatoric = np.minimum(entropy(probabilities).mean(axis=-1), predictive)
    return predictive, aleatoric, predictive - aleatoric


def uncertainty_scores(mc_probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, from its T MC softmax samples (N x T x K): the scores a referral rule can threshold, higher
    meaning less certain: predictive entropy, mutual information (epistemic), 1 - the largest mean probability."""
    predictive, _, epistemic = decompose(mc_probabilities)
    return {"predictive": predictive, "epistemic": epistemic,
            "max_probability": 1 - mc_probabilities.mean(axis=1).max(axis=1)}


def mc_uncertainty(mc_logits: np.ndarray) -> Uncertainty:
    """T x K logits of one image -> the entropy decomposition (`decompose`), mean and spread of the samples.
    Whether it is flagged is the referral rule's call (`runtime.referral`)."""
    probabilities = softmax(mc_logits.astype(np.float64))
    predictive, aleatoric, epistemic = decompose(probabilities)
    return Uncertainty(mean_probabilities=probabilities.mean(axis=0), spread=probabilities.std(axis=0),
                       predictive=float(predictive), aleatoric=float(aleatoric), epistemic=float(epistemic),
                       mc_samples=int(mc_logits.shape[0]))
