"""`mnet eval`: ISIC challenge figures equal the official scorer's, per-image CSV, figures, intervals, errors."""

import csv
import json

import cv2
import numpy as np
import pytest
from isic_challenge_scoring import ClassificationMetric, ClassificationScore
from typer.testing import CliRunner

from melanomanet.challenge import bootstrap_intervals, challenge_metrics, official_scores, write_probability_csv
from melanomanet.cli import app
from melanomanet.data.synth import sample_params, write_dataset
from runtime.manifest import CLASS_NAMES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _predictions(seed: int, count: int, absent=(8,)):
    rng = np.random.default_rng(seed)
    classes = [k for k in range(9) if k not in absent]
    targets = rng.choice(classes, count, p=np.linspace(3, 1, len(classes)) / np.linspace(3, 1, len(classes)).sum())
    logits = rng.normal(size=(count, 9)) + 2.5 * np.eye(9)[targets] * rng.uniform(0, 1, (count, 1))
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    probabilities[:5] = np.float32(1 / 9)
    probabilities[5:9, :2] = np.float32(0.4)
    return targets, probabilities.astype(np.float64)


@pytest.mark.parametrize("seed, absent", [(0, (8,)), (1, (8, 5)), (2, ())])
def test_challenge_figures_equal_the_official_scorer(tmp_path, seed, absent):
    """Ties (all-equal rows, two-way maxima), UNK or other classes absent from the truth."""
    targets, probabilities = _predictions(seed, 600, absent)
    images = [f"ISIC_{i:07d}" for i in range(len(targets))]
    ours = challenge_metrics(targets, probabilities, CLASS_NAMES)
    present = [k for k in range(9) if k not in absent]
    names = [CLASS_NAMES[k] for k in present]
    truth_csv = write_probability_csv(tmp_path / "truth.csv", images, np.eye(9)[targets][:, present], names)
    prediction_csv = write_probability_csv(tmp_path / "pred.csv", images, probabilities[:, present], names)
    score = ClassificationScore.from_file(truth_csv, prediction_csv, ClassificationMetric.BALANCED_ACCURACY)
    assert ours["categories"] == names
    assert abs(ours["balanced_multiclass_accuracy"] - score.aggregate["balanced_accuracy"]) <= 1e-9
    assert abs(ours["macro_auc"] - score.macro_average["auc"]) <= 1e-9
    official = official_scores(images, targets, probabilities, CLASS_NAMES)
    assert official["balanced_multiclass_accuracy"] == score.aggregate["balanced_accuracy"]


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_images():
    small = bootstrap_intervals(*_predictions(3, 200), CLASS_NAMES, resamples=200, seed=0)
    large_targets, large_probabilities = _predictions(3, 3200)
    large = bootstrap_intervals(large_targets, large_probabilities, CLASS_NAMES, resamples=200, seed=0)
    estimate = challenge_metrics(large_targets, large_probabilities, CLASS_NAMES)
    for key in ("balanced_multiclass_accuracy", "macro_auc"):
        assert large[key]["low"] <= estimate[key] <= large[key]["high"]
        assert (large[key]["high"] - large[key]["low"]) < 0.5 * (small[key]["high"] - small[key]["low"])


@pytest.mark.slow
def test_eval_writes_isic_csv_figures_and_agrees_with_the_scorer(trained, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "--data", str(trained["data"]), "--checkpoint",
                                      str(trained["checkpoint"]), "--out", str(out), "--bootstrap", "50",
                                      "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    for key in ("balanced_multiclass_accuracy", "macro_auc"):
        assert abs(report["isic"][key] - report["isic_official"][key]) <= 1e-9
        assert report["bootstrap"][key]["low"] <= report["isic"][key] <= report["bootstrap"][key]["high"]
    with open(out / "predictions.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", *CLASS_NAMES] and len(rows) == 1 + report["samples"]
    assert all(abs(sum(map(float, row[1:])) - 1) < 1e-5 for row in rows[1:])
    for name in ("confusion.png", "roc.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 400 and image.std() > 10
    assert "official scorer" in result.output and "95 % CI" in result.output


def test_an_empty_split_is_a_clear_error(checkpoint, tmp_path):
    """One image per class: the 70/15/15 split leaves validation and test empty."""
    def one_per_class(rng, index, hairs):
        return sample_params(rng, CLASS_NAMES[index], hairs=hairs)

    write_dataset(tmp_path, count=8, seed=0, size=64, draw=one_per_class)
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path), "--checkpoint", str(checkpoint)])
    assert result.exit_code == 1
    assert "the test split is empty" in result.output and "Traceback" not in result.output


def test_a_split_of_one_class_is_scored_without_auc(checkpoint, tmp_path):
    def nevi(rng, index, hairs):
        return sample_params(rng, "NV", hairs=hairs)

    write_dataset(tmp_path, count=12, seed=0, size=64, draw=nevi)
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path), "--checkpoint", str(checkpoint),
                                      "--json", str(tmp_path / "eval.json"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["auc"] is None and report["isic"]["macro_auc"] is None and report["isic_official"] is None


def test_an_unknown_split_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path), "--checkpoint", "run/best.safetensors",
                                      "--split", "validation"])
    assert result.exit_code == 2 and "'train', 'val', 'test'" in result.output
