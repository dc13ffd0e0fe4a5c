"""Decision rules fitted to PH2's dermatologists: the asymmetry score (0, 1, 2), the six dermoscopic colours and
the dermoscopic structures, each a regularised logistic regression over `runtime.abcde.features` measured on the
project's own lesion outline (what the runtime will see), never on the expert mask.

The asymmetry score is ordinal: one rule for "asymmetric about at least one axis", one for "about both".
Agreement is estimated by cross-validation inside the annotated set (5 folds, repeated; the regularisation and
the probability a positive needs chosen by an inner cross-validation in each training fold), never on a single
split; the rules shipped are then fitted on every image. A colour or a structure is shown in reports only when
its cross-validated kappa reaches SHOW_KAPPA."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from melanomanet.data.ph2 import COLOURS, image_and_mask_files, read_annotations
from runtime.abcde.rules import TARGET_KINDS

STRENGTHS = (0.01, 0.03, 0.1)
THRESHOLDS = (0.3, 0.5, 0.7)
FOLDS = 5
REPEATS = 5
SHOW_KAPPA = 0.4


def targets(row: dict) -> dict[str, int]:
    """The dermatologists' reading of one PH2 image as the rules' targets."""
    values = {"asymmetry": int(row["asymmetry"])}
    values.update({colour: int(row[colour]) for colour in COLOURS})
    values.update({"atypical_network": int(row["pigment_network"] == "AT"),
                   "dots_globules": int(row["dots_globules"] != "A"), "streaks": int(row["streaks"] == "P"),
                   "regression": int(row["regression"] == "P"),
                   "blue_whitish_veil": int(row["blue_whitish_veil"] == "P")})
    return values


def ph2_records(root: Path, progress: Callable[[], None] | None = None) -> list[dict]:
    """Per annotated image: its name, diagnosis, targets, and the features on the project's outline (None when the
    outline was withheld or no lesion found)."""
    from runtime.abcde.analyze import fitted_rule_features
    from runtime.imageio import load_image

    images, _ = image_and_mask_files(Path(root))
    records = []
    for row in read_annotations(root):
        records.append({"image": row["image"], "diagnosis": row["diagnosis"], "targets": targets(row),
                        "features": fitted_rule_features(load_image(images[row["image"]]))})
        if progress is not None:
            progress()
    return records


def design(records: list[dict]) -> tuple[list[str], np.ndarray]:
    names = sorted(next(r["features"] for r in records if r["features"] is not None))
    return names, np.array([[r["features"][n] for n in names] for r in records], np.float64)


def kappa(truth: np.ndarray, predicted: np.ndarray, kind: str) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(truth)) < 2 and len(set(predicted)) < 2:
        return 0.0
    return float(cohen_kappa_score(truth, predicted, weights="quadratic" if kind == "ordinal" else None))


def fit(features: np.ndarray, labels: np.ndarray, setting: tuple[float, float], kind: str) -> dict:
    """Standardised features, class-balanced L2 logistic regression (an ordinal score: one for `score >= 1`, one
    for `score >= 2`), and the probability a positive needs; plain numbers only."""
    strength, threshold = setting
    if kind == "ordinal":
        return {"kind": kind, "threshold": threshold, "strength": strength,
                "steps": [fit(features, (labels >= level).astype(int), setting, "binary") for level in (1, 2)]}
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(0), features.std(0) + 1e-9
    model = LogisticRegression(C=strength, class_weight="balanced", max_iter=5000)
    model.fit((features - mean) / scale, labels)
    return {"kind": kind, "mean": mean.tolist(), "scale": scale.tolist(), "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0]), "threshold": threshold, "strength": strength}


def predict(rule: dict, features: np.ndarray) -> np.ndarray:
    from runtime.abcde.rules import decide

    return np.array([decide(rule, row) for row in features])


def folds(labels: np.ndarray, seed: int, count: int = FOLDS):
    from sklearn.model_selection import StratifiedKFold

    splits = min(count, int(np.bincount(labels).min()) if len(set(labels)) > 1 else count)
    return StratifiedKFold(max(2, splits), shuffle=True, random_state=seed).split(labels, labels)


def choose_setting(features: np.ndarray, labels: np.ndarray, kind: str, seed: int) -> tuple[float, float]:
    """The regularisation and decision threshold with the best inner cross-validated kappa."""
    settings = [(strength, threshold) for strength in STRENGTHS for threshold in THRESHOLDS]
    scores = []
    for setting in settings:
        predicted = np.zeros_like(labels)
        for train, test in folds(labels, seed, 4):
            predicted[test] = predict(fit(features[train], labels[train], setting, kind), features[test])
        scores.append(kappa(labels, predicted, kind))
    return settings[int(np.argmax(scores))]


def cross_validated(features: np.ndarray, labels: np.ndarray, kind: str, repeats: int = REPEATS) -> list[np.ndarray]:
    """Out-of-fold predictions, one array per repeat (nested: the setting is chosen inside each training fold)."""
    runs = []
    for repeat in range(repeats):
        predicted = np.zeros_like(labels)
        for train, test in folds(labels, repeat):
            setting = choose_setting(features[train], labels[train], kind, 100 + repeat)
            predicted[test] = predict(fit(features[train], labels[train], setting, kind), features[test])
        runs.append(predicted)
    return runs


def agreement(labels: np.ndarray, runs: list[np.ndarray], kind: str) -> dict:
    kappas = [kappa(labels, run, kind) for run in runs]
    exact = [float(np.mean(labels == run)) for run in runs]
    return {"kappa": float(np.mean(kappas)), "kappa_sd": float(np.std(kappas)), "exact": float(np.mean(exact)),
            "positives": int(np.sum(labels > 0)), "images": int(len(labels)),
            "weights": "quadratic" if kind == "ordinal" else "none"}


def fit_rules(records: list[dict], progress: Callable[[str], None] | None = None) -> dict:
    """Every target's rule fitted on all measured images, with its cross-validated agreement."""
    measured = [r for r in records if r["features"] is not None]
    names, features = design(measured)
    rules = {"features": names, "fitted_on": f"PH2 ({len(measured)} of {len(records)} annotated images measured)",
             "targets": {}}
    for target, kind in TARGET_KINDS.items():
        labels = np.array([r["targets"][target] for r in measured])
        runs = cross_validated(features, labels, kind)
        rule = fit(features, labels, choose_setting(features, labels, kind, 7), kind)
        rule["cross_validated"] = agreement(labels, runs, kind)
        if kind == "binary":  # the colours and the structures
            rule["shown"] = rule["cross_validated"]["kappa"] >= SHOW_KAPPA
        rules["targets"][target] = rule
        if progress is not None:
            progress(target)
    return rules
