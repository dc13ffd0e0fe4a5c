"""ISIC challenge conventions: the submission CSV (`image` + one probability column per class), the
official scorer (`isic-challenge-scoring`), and our own numpy figures computed the way it computes them.

The scorer scores the categories its truth file lists; a category without a single positive (ISIC 2019's UNK in
training data, any class missing from a small split) makes its AUC undefined, so both files list only the
categories present in the truth, and a prediction is the argmax over those (ties count as wrong).
"""

from __future__ import annotations

import csv
import tempfile
import warnings
from pathlib import Path

import numpy as np

from melanomanet.metrics import roc_auc


def write_probability_csv(path: str | Path, images, probabilities: np.ndarray, class_names) -> Path:
    """The ISIC submission format, with every float written exactly (repr round-trips)."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *class_names])
        for image, row in zip(images, probabilities):
            writer.writerow([image, *(repr(float(value)) for value in row)])
    return path


def present_categories(targets: np.ndarray, num_classes: int) -> np.ndarray:
    return np.flatnonzero(np.bincount(targets, minlength=num_classes) > 0)


def challenge_metrics(targets: np.ndarray, probabilities: np.ndarray, class_names) -> dict:
    """Balanced multiclass accuracy and macro AUC over the categories present in the truth."""
    categories = present_categories(targets, len(class_names))
    scores = probabilities[:, categories]
    predicted = categories[scores.argmax(axis=1)]
    tied = (scores == scores.max(axis=1, keepdims=True)).sum(axis=1) > 1
    correct = (predicted == targets) & ~tied
    sensitivities = [correct[targets == k].mean() for k in categories]
    aucs = [roc_auc(targets == k, probabilities[:, k]) for k in categories]
    macro_auc = None if None in aucs else float(np.mean(aucs))
    return {"balanced_multiclass_accuracy": float(np.mean(sensitivities)), "macro_auc": macro_auc,
            "categories": [class_names[k] for k in categories]}


def official_scores(images, targets: np.ndarray, probabilities: np.ndarray, class_names) -> dict | None:
    """The official scorer's balanced multiclass accuracy and macro AUC on the same CSVs, or None when the
    package is not installed or the truth holds a single category (it cannot score that)."""
    try:
        from isic_challenge_scoring import ClassificationMetric, ClassificationScore
    except ImportError:
        return None
    categories = present_categories(targets, len(class_names))
    if len(categories) < 2:
        return None
    names = [class_names[k] for k in categories]
    truth = np.eye(len(class_names))[targets][:, categories]
    with tempfile.TemporaryDirectory() as folder:
        truth_csv = write_probability_csv(Path(folder) / "truth.csv", images, truth, names)
        prediction_csv = write_probability_csv(Path(folder) / "predictions.csv", images,
                                               probabilities[:, categories], names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = ClassificationScore.from_file(truth_csv, prediction_csv, ClassificationMetric.BALANCED_ACCURACY)
    return {"balanced_multiclass_accuracy": float(score.aggregate["balanced_accuracy"]),
            "macro_auc": float(score.macro_average["auc"]), "categories": names}


def bootstrap_intervals(targets: np.ndarray, probabilities: np.ndarray, class_names, resamples: int,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of the challenge figures over stratified bootstrap resamples (each class
    resampled within itself, so every category stays present)."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(targets == k) for k in present_categories(targets, len(class_names))]
    drawn = {"balanced_multiclass_accuracy": [], "macro_auc": []}
    for _ in range(resamples):
        sample = np.concatenate([rng.choice(m, len(m), replace=True) for m in members])
        figures = challenge_metrics(targets[sample], probabilities[sample], class_names)
        for key in drawn:
            drawn[key].append(figures[key])
    tail = (1 - level) / 2 * 100
    return {key: None if None in values else
            {"low": float(np.percentile(values, tail)), "high": float(np.percentile(values, 100 - tail)),
             "level": level, "resamples": resamples} for key, values in drawn.items()}
