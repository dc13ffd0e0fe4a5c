"""The HAM10000 release layout (melanomanet/data/ham10000.py): read as published, split by lesion so that no
lesion is in two splits, stratified by diagnosis; recognised by `prepare_data` (mnet train/eval/calibrate)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from melanomanet.data.ham10000 import CLASS_MAP, describe, grouped_split, read_ham10000
from melanomanet.data.isic import prepare_data
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "real" / "ham10000"


def release(root, rows: list[tuple[str, str, str]], folders=("HAM10000_images_part_1", "HAM10000_images_part_2")):
    """A miniature release: metadata rows (lesion_id, image_id, dx), images spread over the two part folders."""
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    with open(root / "HAM10000_metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        for index, (lesion, image, dx) in enumerate(rows):
            writer.writerow([lesion, image, dx, "histo", "50.0", "male", "back"])
            cv2.imwrite(str(root / folders[index % len(folders)] / f"{image}.jpg"), np.full((48, 64, 3), 128, np.uint8))
    return root


def test_a_lesion_is_never_in_two_splits_and_classes_are_stratified():
    rng = np.random.default_rng(1)
    lesions = np.repeat(np.arange(600), rng.integers(1, 5, 600))
    diagnosis = rng.integers(0, 7, 600)
    targets = diagnosis[lesions]
    splits = grouped_split(targets, lesions.astype(str), seed=3)
    owners = [set(lesions[indices]) for indices in splits.values()]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    assert sorted(np.concatenate(list(splits.values()))) == list(range(len(lesions)))
    for label in range(7):
        groups = len(set(lesions[targets == label]))
        assert abs(len(set(lesions[splits["train"]][targets[splits["train"]] == label])) - 0.7 * groups) <= 1
    again = grouped_split(targets, lesions.astype(str), seed=3)
    assert all(np.array_equal(splits[name], again[name]) for name in splits)


def test_the_release_layout_is_read_from_its_part_folders(tmp_path):
    rows = [(f"HAM_{i // 2:07d}", f"ISIC_{i:07d}", dx) for i, dx in enumerate(list(CLASS_MAP) * 4)]
    root = release(tmp_path, rows)
    files, labels, lesions = read_ham10000(root)
    assert len(files) == len(labels.images) == 28 and len(set(lesions)) == 14
    assert labels.counts()["AK"] == 4 and labels.counts()["SCC"] == labels.counts()["UNK"] == 0
    folder, labels, splits, missing = prepare_data(root, seed=0)
    assert folder == files and missing == []
    assert "absent, so never predicted from this data: SCC, UNK" in describe(labels, missing)


def test_missing_images_and_unknown_diagnoses_are_named(tmp_path):
    root = release(tmp_path, [("HAM_1", "ISIC_1", "nv"), ("HAM_2", "ISIC_2", "mel")])
    (root / "HAM10000_images_part_2" / "ISIC_2.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 2 images listed .* missing .*ISIC_2"):
        prepare_data(root, seed=0)
    _, labels, splits, missing = prepare_data(root, seed=0, skip_missing=True)
    assert missing == ["ISIC_2"] and 1 not in np.concatenate(list(splits.values()))
    with open(root / "HAM10000_metadata.csv", "a") as handle:
        handle.write("HAM_3,ISIC_3,scc,histo,50,male,back\n")
    with pytest.raises(DatasetError, match=r"diagnoses \['scc'\] are not HAM10000's seven"):
        read_ham10000(root)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real not beside the checkout")
def test_the_real_release_reads_as_its_readme_counts():
    files, labels, lesions = read_ham10000(REAL)
    assert len(labels.images) == 10015 and set(labels.images) <= set(files)
    expected = {"NV": 6705, "MEL": 1113, "BKL": 1099, "BCC": 514, "AK": 327, "VASC": 142, "DF": 115}
    assert {name: n for name, n in labels.counts().items() if n} == expected
    splits = grouped_split(labels.targets, lesions, seed=0)
    owners = {name: set(lesions[indices]) for name, indices in splits.items()}
    assert not (owners["train"] & owners["val"] or owners["train"] & owners["test"] or owners["val"] & owners["test"])
    assert sum(len(indices) for indices in splits.values()) == 10015
    for name in CLASS_NAMES[:7]:
        share = labels.counts()[name] and np.mean(labels.targets[splits["test"]] == CLASS_NAMES.index(name))
        assert share == pytest.approx(expected[name] / 10015, abs=0.03)


@pytest.mark.slow
def test_mnet_train_and_eval_take_the_release_layout(tmp_path):
    from typer.testing import CliRunner

    from melanomanet.cli import app

    rows = [(f"HAM_{c}{i}", f"ISIC_{c}{i:03d}", dx) for c, dx in enumerate(CLASS_MAP) for i in range(10)]
    root = release(tmp_path / "ham", rows)
    trained = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1",
                                       "--image-size", "32", "--batch-size", "8"])
    assert trained.exit_code == 0, trained.output
    evaluated = CliRunner().invoke(app, ["eval", "--data", str(root), "--checkpoint",
                                         str(tmp_path / "run" / "best.safetensors")])
    assert evaluated.exit_code == 0 and "balanced multiclass accuracy" in evaluated.output, evaluated.output
