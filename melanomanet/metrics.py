"""Classification metrics in numpy: the figures `mnet eval` reports."""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def classification_report(targets: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...]) -> dict:
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(targets, predictions, num_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    negatives = len(targets) - support
    true_negative = negatives - (predicted - true_positive)
    sensitivity = _divide(true_positive, support)
    specificity = _divide(true_negative, negatives)
    precision = _divide(true_positive, predicted)
    f1 = _divide(2 * precision * sensitivity, precision + sensitivity)
    present = support > 0
    aucs = {name: roc_auc(targets == k, probabilities[:, k]) for k, name in enumerate(class_names) if present[k]}
    return {
        "samples": int(len(targets)),
        "accuracy": float(np.mean(predictions == targets)),
        "balanced_accuracy": float(sensitivity[present].mean()),
        "f1_weighted": float(np.sum(f1 * support) / support.sum()),
        "f1_macro": float(f1[present].mean()),
        "auc": _mean_or_none([v for v in aucs.values() if v is not None]),
        "per_class": {
            name: {"support": int(support[k]), "sensitivity": float(sensitivity[k]),
                   "specificity": float(specificity[k]), "precision": float(precision[k]), "f1": float(f1[k]),
                   "auc": aucs.get(name)}
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    positive = positive.astype(bool)
    n_positive, n_negative = positive.sum(), (~positive).sum()
    if n_positive == 0 or n_negative == 0:
        return None
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((2 * ends - counts + 1) / 2)[group]
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def _mean_or_none(values: list[float]) -> float | None:
    """The mean, or None where nothing can be averaged (an AUC needs positives and negatives)."""
    return float(np.mean(values)) if values else None


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)
