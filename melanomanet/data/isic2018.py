"""ISIC 2018 Task 3 as published: the one-hot ground truth `ISIC2018_Task3_<part>_GroundTruth.csv`
(`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`) beside its `ISIC2018_Task3_<part>_Input/` images, and, for the training
part, `ISIC2018_Task3_Training_LesionGroupings.csv` (`image,lesion_id`): with it the split is by lesion."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Release, image_files
from melanomanet.data.onehot import read_one_hot

CLASS_MAP = {"MEL": "MEL", "NV": "NV", "BCC": "BCC", "AKIEC": "AK", "BKL": "BKL", "DF": "DF", "VASC": "VASC"}


def ground_truth(root: Path) -> Path | None:
    found = sorted(root.glob("ISIC2018_Task3_*GroundTruth.csv"))
    return found[0] if found else None


def is_isic2018(root: Path) -> bool:
    return ground_truth(root) is not None


def read_isic2018(root: Path) -> Release:
    path = ground_truth(root)
    labels = read_one_hot(path, CLASS_MAP)
    files = image_files(root, *sorted(p for p in root.glob("ISIC2018_Task3_*_Input") if p.is_dir()))
    groupings = root / "ISIC2018_Task3_Training_LesionGroupings.csv"
    if not groupings.is_file():
        return Release("isic2018", files, labels, CLASS_MAP)
    with open(groupings, newline="") as handle:
        lesion = {row["image"]: row["lesion_id"] for row in csv.DictReader(handle)}
    groups = np.asarray([lesion.get(name, name) for name in labels.images])
    return Release("isic2018", files, labels, CLASS_MAP, groups, grouped_by="lesion_id")
