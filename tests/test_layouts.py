"""The public data sets read as published (melanomanet/data/): HAM10000, ISIC 2018 Task 3, ISIC 2017, PH2 and
PAD-UFES-20, recognised by `prepare_data` (mnet train/eval/calibrate) or named with --layout; split by lesion or
patient where a set has one, so that no lesion is in two splits; what was found said and recorded."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from melanomanet.data.ham10000 import CLASS_MAP, read_ham10000
from melanomanet.data.isic2017 import mask_files, read_isic2017
from melanomanet.data.labels import grouped_split
from melanomanet.data.layouts import detect_layout, prepare_data
from melanomanet.data.ph2 import image_and_mask_files, read_annotations, read_ph2
from runtime.errors import ConfigError, DatasetError
from runtime.manifest import CLASS_NAMES
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real not beside the checkout")


def write_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def ham_release(root, rows: list[tuple[str, str, str]], folders=("HAM10000_images_part_1", "HAM10000_images_part_2")):
    """A miniature release: metadata rows (lesion_id, image_id, dx), images spread over the two part folders."""
    write_csv(root / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
              [[lesion, image, dx, "histo", "50.0", "male", "back"] for lesion, image, dx in rows])
    for index, (_, image, _) in enumerate(rows):
        write_image(root / folders[index % len(folders)] / f"{image}.jpg")
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


def test_ham10000_is_read_from_its_part_folders_and_recorded(tmp_path):
    rows = [(f"HAM_{i // 2:07d}", f"ISIC_{i:07d}", dx) for i, dx in enumerate(list(CLASS_MAP) * 4)]
    root = ham_release(tmp_path, rows)
    release = read_ham10000(root)
    assert len(release.files) == len(release.labels.images) == 28 and len(set(release.groups)) == 14
    assert release.labels.counts()["AK"] == 4 and release.labels.counts()["SCC"] == release.labels.counts()["UNK"] == 0
    prepared = prepare_data(root, seed=0)
    assert prepared.image_root == release.files and prepared.missing == [] and prepared.layout == "ham10000"
    record = prepared.record(seed=0)
    assert record["split"]["grouped_by"] == "lesion_id" and record["absent_classes"] == ["SCC", "UNK"]
    assert record["class_map"]["akiec"] == "AK"
    assert sum(part["images"] for part in record["split"]["parts"].values()) == 28
    assert "absent, so never learnt or measured from this data: SCC, UNK" in prepared.describe()


def test_labels_without_images_and_images_without_labels_are_said(tmp_path):
    root = ham_release(tmp_path, [("HAM_1", "ISIC_1", "nv"), ("HAM_2", "ISIC_2", "mel")])
    (root / "HAM10000_images_part_2" / "ISIC_2.jpg").unlink()
    write_image(root / "HAM10000_images_part_1" / "ISIC_9.jpg")
    with pytest.raises(DatasetError, match="1 of 2 images listed .* missing .*ISIC_2"):
        prepare_data(root, seed=0)
    prepared = prepare_data(root, seed=0, skip_missing=True)
    assert prepared.missing == ["ISIC_2"] and 1 not in np.concatenate(list(prepared.splits.values()))
    assert prepared.unlabelled == ["ISIC_9"]
    said = prepared.describe()
    assert "1 labels without an image (ISIC_2)" in said and "1 images without a label (ISIC_9)" in said
    with open(root / "HAM10000_metadata.csv", "a") as handle:
        handle.write("HAM_3,ISIC_3,scc,histo,50,male,back\n")
    with pytest.raises(DatasetError, match=r"diagnoses \['scc'\] are not HAM10000's seven"):
        read_ham10000(root)


def test_isic2018_task3_maps_akiec_and_splits_by_its_lesion_groupings(tmp_path):
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [[f"ISIC_{i:07d}", *[float(j == i % 7) for j in range(7)]] for i in range(42)]
    write_csv(tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", *classes], rows)
    for row in rows:
        write_image(tmp_path / "ISIC2018_Task3_Training_Input" / f"{row[0]}.jpg")
    assert detect_layout(tmp_path) == "isic2018"
    prepared = prepare_data(tmp_path, seed=0)
    assert prepared.labels.counts()["AK"] == 6 and prepared.grouped_by is None
    write_csv(tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv", ["image", "lesion_id"],
              [[row[0], f"L{i // 3}"] for i, row in enumerate(rows)])
    prepared = prepare_data(tmp_path, seed=0)
    lesions = {row[0]: f"L{i // 3}" for i, row in enumerate(rows)}
    owners = [{lesions[prepared.labels.images[i]] for i in part} for part in prepared.splits.values()]
    assert prepared.grouped_by == "lesion_id" and not (owners[0] & owners[1] or owners[0] & owners[2]
                                                         or owners[1] & owners[2])


def test_isic2017_maps_melanoma_keratosis_and_the_rest(tmp_path):
    write_csv(tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
              [["ISIC_1", "1.0", "0.0"], ["ISIC_2", "0.0", "1.0"], ["ISIC_3", "0.0", "0.0"]])
    for name in ("ISIC_1", "ISIC_2", "ISIC_3"):
        write_image(tmp_path / "ISIC-2017_Training_Data" / f"{name}.jpg")
        write_image(tmp_path / "ISIC-2017_Training_Part1_GroundTruth" / f"{name}_segmentation.png")
    write_image(tmp_path / "ISIC-2017_Training_Data" / "ISIC_1_superpixels.png")
    release = read_isic2017(tmp_path)
    assert [CLASS_NAMES[t] for t in release.labels.targets] == ["MEL", "BKL", "NV"]
    assert set(release.files) == {"ISIC_1", "ISIC_2", "ISIC_3"} and set(mask_files(tmp_path)) == set(release.files)


PUBLISHED_PH2 = """\
|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry || Pigment Network || Dots/Globules || Streaks || Regression Areas || Blue-Whitish Veil || Colors ||
|| IMD003 ||                        ||                  0 ||         0 ||               T ||             A ||       A ||                A ||                 A ||     4  ||
|| IMD058 ||      Melanoma          ||                  2 ||         2 ||              AT ||            AT ||       P ||                P ||                 P ||  1 3 4 5 6  ||
"""  # noqa: E501


def test_ph2_reads_the_published_table_and_folders(tmp_path):
    (tmp_path / "PH2_dataset.txt").write_text(PUBLISHED_PH2)
    for case in ("IMD003", "IMD058"):
        write_image(tmp_path / "PH2 Dataset images" / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        write_image(tmp_path / "PH2 Dataset images" / case / f"{case}_lesion" / f"{case}_lesion.bmp")
    rows = read_annotations(tmp_path)
    assert rows[0]["diagnosis"] == "common_nevus" and rows[0]["dark_brown"] == 1 and rows[0]["black"] == 0
    melanoma = rows[1]
    assert (melanoma["diagnosis"], melanoma["asymmetry"], melanoma["streaks"], melanoma["blue_whitish_veil"]) == \
        ("melanoma", 2, "P", "P")
    colours = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
    assert [melanoma[c] for c in colours] == [1, 0, 1, 1, 1, 1]
    images, masks = image_and_mask_files(tmp_path)
    assert set(images) == set(masks) == {"IMD003", "IMD058"}
    assert [CLASS_NAMES[t] for t in read_ph2(tmp_path).labels.targets] == ["NV", "MEL"]


def test_pad_ufes_splits_by_patient_and_matches_pngs_by_name(tmp_path):
    diagnostics = ["MEL", "NEV", "BCC", "ACK", "SEK", "SCC"]
    rows = [[f"PAT_{i // 2}_{i}_1.png", diagnostics[(i // 2) % 6]] for i in range(72)]
    write_csv(tmp_path / "metadata.csv", ["img_id", "diagnostic"], rows)
    for name, _ in rows:
        write_image(tmp_path / "imgs_part_1" / name)
    prepared = prepare_data(tmp_path, seed=0)
    assert prepared.layout == "pad-ufes-20" and prepared.grouped_by == "patient" and prepared.missing == []
    assert prepared.labels.counts()["AK"] == prepared.labels.counts()["SCC"] == 12
    patients = [{prepared.labels.images[i].split("_")[1] for i in part} for part in prepared.splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])


def test_an_unknown_layout_name_and_an_empty_folder_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="--layout 'ph3' is not one of: ham10000, isic2018"):
        prepare_data(tmp_path, seed=0, layout="ph3")
    with pytest.raises(DatasetError, match="no data set found.*HAM10000_metadata.csv"):
        prepare_data(tmp_path, seed=0)


@needs_real
def test_the_real_releases_read_as_their_readme_counts():
    ham = read_ham10000(REAL / "ham10000")
    assert len(ham.labels.images) == 10015 and set(ham.labels.images) <= set(ham.files)
    expected = {"NV": 6705, "MEL": 1113, "BKL": 1099, "BCC": 514, "AK": 327, "VASC": 142, "DF": 115}
    assert {name: n for name, n in ham.labels.counts().items() if n} == expected
    isic2017 = prepare_data(REAL / "isic2017", seed=0)
    assert isic2017.layout == "isic2017" and len(isic2017.labels.images) == 456 and not isic2017.missing
    assert len(mask_files(REAL / "isic2017")) == 456
    ph2 = prepare_data(REAL / "ph2", seed=0)
    assert ph2.layout == "ph2" and ph2.labels.counts()["MEL"] == 21 and ph2.labels.counts()["NV"] == 82
    assert len(image_and_mask_files(REAL / "ph2")[1]) == 103
    pad = prepare_data(REAL / "pad-ufes-20", seed=0)
    assert pad.layout == "pad-ufes-20" and len(pad.labels.images) == 109 and not pad.missing
    assert {name: n for name, n in pad.labels.counts().items() if n} == \
        {"MEL": 3, "NV": 13, "BCC": 39, "AK": 32, "BKL": 12, "SCC": 10}


@needs_real
def test_no_real_lesion_is_in_two_splits():
    prepared = prepare_data(REAL / "ham10000", seed=0)
    lesions = {row: lesion for row, lesion in zip(prepared.labels.images, read_ham10000(REAL / "ham10000").groups)}
    owners = [{lesions[prepared.labels.images[i]] for i in part} for part in prepared.splits.values()]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    assert sum(len(part) for part in prepared.splits.values()) == 10015
    assert all(prepared.labels.counts()[name] for name in ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC"))


def test_ph2_concept_sets_hold_the_marked_images_against_as_many_without(tmp_path):
    from melanomanet.concepts import PH2_CONCEPTS, keep_encoded, ph2_concept_sets, wilson_interval

    header = ["image", "histology", "diagnosis", "asymmetry", "pigment_network", "dots_globules", "streaks",
              "regression", "blue_whitish_veil", "white", "red", "light_brown", "dark_brown", "blue_gray", "black"]
    rows = [[f"IMD{i:03d}", "", "melanoma" if i < 6 else "common_nevus", 0, "AT" if i % 2 else "T", "A",
             "P" if i < 4 else "A", "A", "P" if i < 6 else "A", 0, 0, 1, 1, 0, 0] for i in range(20)]
    write_csv(tmp_path / "PH2_annotations.csv", header, rows)
    for row in rows:
        write_image(tmp_path / "images" / f"{row[0]}.jpg")
    sets = ph2_concept_sets(tmp_path, seed=0)
    assert set(sets) == set(PH2_CONCEPTS) - {"regression", "atypical_dots_globules"}
    positive, negative = sets["streaks"]
    assert [p.stem for p in positive] == ["IMD000", "IMD001", "IMD002", "IMD003"] and len(negative) == 4
    assert not {p.stem for p in negative} & {p.stem for p in positive}
    assert len(sets["atypical_pigment_network"][0]) == 10
    low, high = wilson_interval(8, 10)
    assert low < 0.8 < high and high - low > 0.3
    report = {"concepts": {"streaks": {"fastcav_accuracy": 0.8}, "regression": {"fastcav_accuracy": 0.6}}}
    tensors, report = keep_encoded({"streaks.cav": 1, "streaks.mean": 2, "regression.cav": 3}, report, 0.75)
    assert set(tensors) == {"streaks.cav", "streaks.mean"} and not report["concepts"]["regression"]["carried"]
