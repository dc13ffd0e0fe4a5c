"""`mnet train-segmenter` end to end on drawn stand-ins for HAM10000 and PAD-UFES-20 (a few steps: what is
checked is the plumbing, not the model): the exported ONNX computes what the PyTorch model does, records carry
the file's sha256, the clinical cross-validation holds out whole patients, fold models are selectable at run
time, and portrait photos are turned as the runtime turns them."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from melanomanet.cli import app
from melanomanet.segmenter import (
    CLINICAL_FOLDS,
    build_unet,
    clinical_folds,
    export_segmenter,
    load_clinical_masks,
    to_tensor,
)
from runtime.abcde.segmenter import INPUT_SIZE, lesion_probability, using_model
from runtime.errors import DatasetError
from runtime.manifest import sha256_file


def drawn_lesion(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (205, 160, 140)
    mask = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3)))
    axes = (int(rng.integers(width // 10, width // 5)), int(rng.integers(height // 10, height // 5)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    image[mask > 0] = (110, 70, 50)
    return image, mask


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    rng = np.random.default_rng(0)
    ham = tmp_path_factory.mktemp("ham10000")
    (ham / "images").mkdir()
    (ham / "masks").mkdir()
    with open(ham / "HAM10000_metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        for index in range(40):
            name = f"ISIC_{index:07d}"
            writer.writerow([f"HAM_{index:07d}", name, "nv", "histo", "50", "male", "back"])
            image, mask = drawn_lesion(rng, 90, 120)
            cv2.imwrite(str(ham / "images" / f"{name}.jpg"), image[..., ::-1])
            cv2.imwrite(str(ham / "masks" / f"{name}_segmentation.png"), mask)
    pad = tmp_path_factory.mktemp("pad-ufes-20")
    (pad / "images").mkdir()
    (pad / "masks").mkdir()
    with open(pad / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "img_id", "diagnostic"])
        for patient in range(8):
            for lesion in range(2):
                name = f"PAT_{patient}_{lesion}_1"
                writer.writerow([f"PAT_{patient}", f"{name}.png", "NEV"])
                size = (160, 120) if lesion else (120, 160)  # a portrait photo and a landscape one
                image, mask = drawn_lesion(rng, *size)
                cv2.imwrite(str(pad / "images" / f"{name}.png"), image[..., ::-1])
                cv2.imwrite(str(pad / "masks" / f"{name}_mask.png"), mask)
    return ham, pad


def test_folds_keep_each_patient_whole_and_are_reproducible():
    patients = [f"P{i // 3}" for i in range(60)]
    folds = clinical_folds(patients)
    assert set(folds) == set(range(CLINICAL_FOLDS))
    for patient in set(patients):
        assert len({fold for fold, owner in zip(folds, patients) if owner == patient}) == 1
    assert np.array_equal(folds, clinical_folds(patients))
    assert not np.array_equal(folds, clinical_folds(patients, seed=1))


def test_portrait_photos_are_turned_landscape_with_their_masks(datasets):
    _, pad = datasets
    images, masks, names, patients = load_clinical_masks(pad)
    assert images.shape[1:3] == masks.shape[1:] == INPUT_SIZE[::-1] and len(names) == 16
    portrait = names.index("PAT_3_1_1")
    mask = cv2.imread(str(pad / "masks" / "PAT_3_1_1_mask.png"), cv2.IMREAD_GRAYSCALE)
    expected = cv2.resize(np.ascontiguousarray(np.rot90(mask)), INPUT_SIZE, interpolation=cv2.INTER_AREA) > 127
    assert np.mean(masks[portrait] == expected) > 0.99
    assert patients[portrait] == "PAT_3"


def test_a_folder_that_is_not_pad_ufes_is_refused_clearly(tmp_path):
    with pytest.raises(DatasetError, match="not a PAD-UFES-20 folder"):
        load_clinical_masks(tmp_path)


def test_exported_segmenter_computes_what_pytorch_does(tmp_path):
    import torch

    torch.manual_seed(0)
    model = build_unet().eval()
    out = tmp_path / "segmenter.onnx"
    record = export_segmenter(model, out, {"trained_on": "nothing (a test)"})
    assert record["sha256"] == sha256_file(out) == json.loads(out.with_suffix(".json").read_text())["sha256"]
    image = np.random.default_rng(1).integers(0, 255, (INPUT_SIZE[1], INPUT_SIZE[0], 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.sigmoid(model(to_tensor(image[None])))[0, 0].numpy()
    for kind in ("dermoscopy", "clinical"):
        with using_model(out, kind):
            got = lesion_probability(image, kind=kind)
            other = lesion_probability(image, kind="clinical" if kind == "dermoscopy" else "dermoscopy")
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert not np.allclose(other, got, atol=1e-3)  # the other kind keeps its shipped model
        assert not np.allclose(lesion_probability(image, kind=kind), got, atol=1e-3)  # and outside the block


def test_train_segmenter_with_clinical_folds(datasets, tmp_path):
    ham, pad = datasets
    out, clinical_out, folds_dir = tmp_path / "segmenter.onnx", tmp_path / "clinical.onnx", tmp_path / "folds"
    result = CliRunner().invoke(app, ["train-segmenter", str(ham), "-o", str(out), "--epochs", "1", "--limit", "32",
                                      "--clinical", str(pad), "--clinical-steps", "2", "--folds-dir", str(folds_dir),
                                      "--clinical-out", str(clinical_out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(out) and "fine_tuned_on" not in record
    clinical = json.loads(clinical_out.with_suffix(".json").read_text())
    assert clinical["sha256"] == sha256_file(clinical_out) and "PAD-UFES-20" in clinical["fine_tuned_on"]
    held_out = []
    for fold in range(CLINICAL_FOLDS):
        fold_record = json.loads((folds_dir / f"fold{fold}.json").read_text())
        assert fold_record["fold"] == fold and fold_record["sha256"] == sha256_file(folds_dir / f"fold{fold}.onnx")
        held_out.append(fold_record["held_out"])
    names = [name for fold in held_out for name in fold]
    assert sorted(names) == sorted(f"PAT_{patient}_{lesion}_1" for patient in range(8) for lesion in range(2))
    for fold in held_out:
        for other in held_out:
            if other is not fold:
                assert not {n.split("_")[1] for n in fold} & {n.split("_")[1] for n in other}  # patients whole


def test_train_segmenter_names_a_wrong_clinical_folder(datasets, tmp_path):
    ham, _ = datasets
    result = CliRunner().invoke(app, ["train-segmenter", str(ham), "-o", str(tmp_path / "s.onnx"), "--epochs", "1",
                                      "--limit", "32", "--clinical", str(tmp_path)])
    assert result.exit_code != 0 and "not a PAD-UFES-20 folder" in result.output
    assert not (tmp_path / "s.onnx").exists()


def test_an_unreadable_photo_is_named(datasets, tmp_path):
    import shutil

    _, pad = datasets
    broken = tmp_path / "pad"
    shutil.copytree(pad, broken)
    (broken / "images" / "PAT_2_0_1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="PAT_2_0_1.png"):
        load_clinical_masks(broken)
