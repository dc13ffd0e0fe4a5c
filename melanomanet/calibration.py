"""Temperature scaling (Guo et al. 2017), calibration figures, referral thresholds chosen on data, risk-coverage
and out-of-distribution separation. Pure numpy over logits and MC logits; `mnet calibrate` and `mnet eval` feed
them what `melanomanet.evaluate.collect_outputs` gathers, with the runtime's own MC masks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from melanomanet.metrics import roc_auc
from runtime.errors import ConfigError, ManifestError
from runtime.referral import UNCERTAINTY_SCORES, ReferralRule
from runtime.uncertainty import softmax, uncertainty_scores

CALIBRATION_SCHEMA = "mnet.calibration/1"
ECE_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
REFERRAL_RATES = tuple(round(r, 2) for r in np.arange(0, 0.51, 0.05))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T): a bounded 1-D search on log T."""
    from scipy.optimize import minimize_scalar

    logits = logits.astype(np.float64)
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(softmax(logits / math.exp(log_t)), targets),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def negative_log_likelihood(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(targets)), targets], 1e-12, None))))


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Confidence (max probability) in equal-width bins: per bin the count, mean confidence and accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / counts
        accuracy = np.bincount(index, correct.astype(float), bins) / counts
    return {"counts": counts, "confidence": mean_confidence, "accuracy": accuracy}


def calibration_figures(probabilities: np.ndarray, targets: np.ndarray) -> dict:
    """ECE and MCE (15 equal-width confidence bins), NLL, multiclass Brier score, accuracy. MCE is the largest gap
    of any filled bin, however few images it holds: `mce_bin_images` says how many (on a few hundred images, a bin
    of one or two images can set it, so it can rise while ECE falls)."""
    table = reliability_bins(probabilities, targets)
    filled = table["counts"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    onehot = np.eye(probabilities.shape[1])[targets]
    return {"ece": float(np.sum(gaps * table["counts"][filled]) / len(targets)), "mce": float(gaps.max()),
            "mce_bin_images": int(table["counts"][filled][int(np.argmax(gaps))]),
            "nll": negative_log_likelihood(probabilities, targets),
            "brier": float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1))),
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == targets))}


def threshold_for_referral_rate(scores: np.ndarray, rate: float) -> float:
    """The threshold above which at most `rate` of these scores lie (the most uncertain are referred)."""
    if not 0 <= rate < 1:
        raise ConfigError(f"--referral-rate must be in [0, 1), got {rate}")
    if rate == 0:
        return float(scores.max())
    return float(np.quantile(scores, 1 - rate, method="higher"))


def threshold_for_sensitivity(class_probability: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The largest t such that the share of positives with probability >= t is at least `target`:
    the most specific operating point that keeps the sensitivity."""
    if not 0 < target <= 1:
        raise ConfigError(f"target sensitivity must be in (0, 1], got {target}")
    positives = np.sort(class_probability[positive])[::-1]
    if len(positives) == 0:
        raise ConfigError("the validation split holds no image of that class; its sensitivity cannot be chosen")
    needed = math.ceil(target * len(positives) - 1e-9)
    return float(positives[needed - 1])


def sensitivity_specificity(class_probability: np.ndarray, positive: np.ndarray, threshold: float) -> tuple:
    called = class_probability >= threshold
    return float(called[positive].mean()), float((~called[~positive]).mean()) if (~positive).any() else None


def risk_coverage(scores: dict[str, np.ndarray], predictions: np.ndarray, targets: np.ndarray,
                  rates=REFERRAL_RATES) -> dict:
    """Per score: accuracy and balanced accuracy of the images kept when the given share of the most
    uncertain is referred, and the area under the risk-coverage curve (AURC, lower is better)."""
    correct = predictions == targets
    curves = {}
    for name, score in scores.items():
        order = np.argsort(score, kind="stable")
        risk = np.cumsum(~correct[order]) / np.arange(1, len(order) + 1)
        rows = []
        for rate in rates:
            kept = order[: max(1, int(round(len(order) * (1 - rate))))]
            present = np.unique(targets[kept])
            rows.append({"referral_rate": float(rate), "kept": int(len(kept)),
                         "accuracy": float(correct[kept].mean()),
                         "balanced_accuracy": float(np.mean([correct[kept][targets[kept] == k].mean()
                                                             for k in present]))})
        curves[name] = {"aurc": float(risk.mean()), "rows": rows}
    return curves


def ood_separation(in_scores: dict[str, np.ndarray], out_scores: dict[str, np.ndarray]) -> dict:
    """AUROC of each uncertainty score for telling out-of-distribution images (positive) from lesions."""
    return {name: roc_auc(np.r_[np.zeros(len(in_scores[name])), np.ones(len(out_scores[name]))],
                          np.r_[in_scores[name], out_scores[name]]) for name in in_scores}


def mc_scores(mc_logits: np.ndarray, temperature: float = 1.0) -> dict[str, np.ndarray]:
    return uncertainty_scores(softmax(mc_logits.astype(np.float64) / temperature))


def choose_referral(logits: np.ndarray, mc_logits: np.ndarray, targets: np.ndarray, temperature: float,
                    class_names, score: str, rate: float | None, sensitivity: str | None) -> dict:
    """The referral rule and what it achieved on these images."""
    if (rate is None) == (sensitivity is None):
        raise ConfigError("choose the operating point with exactly one of --referral-rate R or "
                          "--target-sensitivity CLASS:S")
    if sensitivity is not None:
        name, target = parse_target(sensitivity, class_names)
        probability = softmax(logits.astype(np.float64) / temperature)[:, class_names.index(name)]
        positive = targets == class_names.index(name)
        threshold = threshold_for_sensitivity(probability, positive, target)
        achieved, specificity = sensitivity_specificity(probability, positive, threshold)
        rule = ReferralRule("class_probability", threshold, name,
                            f"chosen for {name} sensitivity >= {target:g} on validation")
        return {"rule": rule.to_dict(), "validation": {"sensitivity": achieved, "specificity": specificity,
                                                       "referred": float(np.mean(probability >= threshold))}}
    if score not in UNCERTAINTY_SCORES:
        raise ConfigError(f"--score {score!r} is not one of {', '.join(UNCERTAINTY_SCORES)}")
    values = mc_scores(mc_logits, temperature)[score]
    threshold = threshold_for_referral_rate(values, rate)
    rule = ReferralRule(score, threshold, None, f"chosen for a {rate * 100:g} % referral rate on validation")
    kept = values <= threshold
    correct = softmax(logits.astype(np.float64) / temperature).argmax(axis=1) == targets
    return {"rule": rule.to_dict(), "validation": {"referred": float(np.mean(~kept)),
                                                   "accuracy_kept": float(correct[kept].mean()),
                                                   "accuracy_all": float(correct.mean())}}


def parse_target(text: str, class_names) -> tuple[str, float]:
    name, _, value = text.partition(":")
    if name not in class_names or not value:
        raise ConfigError(f"--target-sensitivity {text!r}: expected CLASS:S with CLASS one of "
                          f"{', '.join(class_names)}, e.g. MEL:0.95")
    try:
        return name, float(value)
    except ValueError:
        raise ConfigError(f"--target-sensitivity {text!r}: {value!r} is not a number") from None


def load_calibration(path: str | Path, source_sha256: str) -> tuple[float, dict]:
    """Temperature and referral rule of a `mnet calibrate` file made for this very checkpoint."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: not a readable calibration file ({error}); make one with mnet calibrate") \
            from None
    if not isinstance(raw, dict) or raw.get("schema") != CALIBRATION_SCHEMA:
        raise ManifestError(f"{path}: not a {CALIBRATION_SCHEMA} file; make one with mnet calibrate")
    if raw.get("checkpoint_sha256") != source_sha256:
        raise ManifestError(f"{path}: fitted on checkpoint {str(raw.get('checkpoint_sha256'))[:12]}…, not on the "
                            f"one exported ({source_sha256[:12]}…); run mnet calibrate on this checkpoint")
    rule = ReferralRule.from_dict(raw.get("referral", {}).get("rule"))
    return float(raw["temperature"]), rule.to_dict() if raw.get("referral") else {}
