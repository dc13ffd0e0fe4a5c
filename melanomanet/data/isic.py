"""The ISIC 2019 layout: `<image>.jpg` files beside `ISIC_2019_Training_GroundTruth.csv` (or any one-hot CSV with
the nine ISIC 2019 columns, given as the folder or as the file); also what `mnet synth` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melanomanet.data.labels import SPLITS, Labels, Release, image_files, stratified_split
from melanomanet.data.onehot import read_one_hot
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

__all__ = ["SPLITS", "Labels", "DatasetError", "class_weights", "read_ground_truth",
           "stratified_split", "find_ground_truth", "is_isic2019", "read_isic2019"]

GROUND_TRUTH_NAMES = ("ISIC_2019_Training_GroundTruth.csv",)
CLASS_MAP = {name: name for name in CLASS_NAMES}


def find_ground_truth(root: str | Path) -> Path:
    root = Path(root)
    if root.is_file():
        return root
    for name in GROUND_TRUTH_NAMES:
        if (root / name).exists():
            return root / name
    raise DatasetError(f"{root}: no data set found: neither {GROUND_TRUTH_NAMES[0]} (ISIC 2019) nor the label "
                       "file of a layout --layout names (HAM10000_metadata.csv, ISIC2018_Task3_*_GroundTruth.csv, "
                       "ISIC-2017_*Part3_GroundTruth.csv, PH2_annotations.csv or PH2_dataset.txt, PAD-UFES-20's "
                       "metadata.csv); point --data at the folder that holds it (or create one with `mnet synth`)")


def is_isic2019(root: Path) -> bool:
    return root.is_file() or any((root / name).exists() for name in GROUND_TRUTH_NAMES)


def read_ground_truth(path: str | Path) -> Labels:
    """One-hot CSV with columns image, MEL, ..., UNK (extra columns such as score_weight ignored)."""
    return read_one_hot(path, CLASS_MAP)


def read_isic2019(root: Path) -> Release:
    path = find_ground_truth(root)
    return Release("isic2019", image_files(path.parent), read_ground_truth(path), CLASS_MAP)


def class_weights(targets: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the classes present; 0 for absent classes (ISIC's UNK)."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)
