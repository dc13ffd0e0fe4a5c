import numpy as np
import pytest
from sklearn import metrics as sk

from melanomanet.metrics import classification_report


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 8, 400)
    logits = rng.normal(size=(400, 9)) + 2.0 * np.eye(9)[targets] * rng.uniform(0, 1, (400, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = tuple("ABCDEFGHI")
    report = classification_report(targets, probabilities, names)
    predictions = probabilities.argmax(1)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(targets, predictions))
    assert report["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(targets, predictions))
    labels = np.unique(targets)
    assert report["f1_weighted"] == pytest.approx(sk.f1_score(targets, predictions, average="weighted"))
    assert report["f1_macro"] == pytest.approx(sk.f1_score(targets, predictions, average="macro", labels=labels))
    for k in labels:
        expected = sk.roc_auc_score(targets == k, probabilities[:, k])
        assert report["per_class"][names[k]]["auc"] == pytest.approx(expected)
    expected = sk.confusion_matrix(targets, predictions, labels=range(9))
    np.testing.assert_array_equal(report["confusion_matrix"], expected)
