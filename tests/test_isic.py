import numpy as np
import pytest

from melanomanet.data.isic import class_weights, read_ground_truth, stratified_split
from runtime.manifest import CLASS_NAMES
from tests.conftest import REAL_GROUND_TRUTH

pytestmark = pytest.mark.skipif(not REAL_GROUND_TRUTH.exists(), reason="../shared/data not beside the checkout")


def test_real_ground_truth_counts():
    labels = read_ground_truth(REAL_GROUND_TRUTH)
    assert len(labels.images) == 25_331
    assert labels.counts() == {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239,
                               "VASC": 253, "SCC": 628, "UNK": 0}


def test_split_is_stratified_and_seeded():
    targets = read_ground_truth(REAL_GROUND_TRUTH).targets
    splits = stratified_split(targets, seed=3)
    again = stratified_split(targets, seed=3)
    other = stratified_split(targets, seed=4)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    assert not np.array_equal(splits["train"], other["train"])
    joined = np.concatenate(list(splits.values()))
    assert len(joined) == len(targets) and len(np.unique(joined)) == len(targets)
    overall = np.bincount(targets, minlength=9) / len(targets)
    for name, fraction in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert len(splits[name]) / len(targets) == pytest.approx(fraction, abs=0.002)
        share = np.bincount(targets[splits[name]], minlength=9) / len(splits[name])
        np.testing.assert_allclose(share, overall, atol=0.002)


def test_class_weights_inverse_frequency():
    targets = read_ground_truth(REAL_GROUND_TRUTH).targets
    weights = class_weights(targets)
    counts = np.bincount(targets, minlength=9)
    assert weights[CLASS_NAMES.index("UNK")] == 0
    present = counts > 0
    np.testing.assert_allclose(weights[present] * counts[present], len(targets) / present.sum(), rtol=1e-5)
