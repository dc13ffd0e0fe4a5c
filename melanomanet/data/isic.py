"""The ISIC 2019 layout: `<image>.jpg` files beside `ISIC_2019_Training_GroundTruth.csv`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.ham10000 import is_ham10000, prepare_ham10000
from melanomanet.data.labels import SPLITS, Labels, missing_images_message
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

__all__ = ["SPLITS", "Labels", "DatasetError", "prepare_data", "class_weights", "image_path", "read_ground_truth",
           "stratified_split", "find_ground_truth"]

GROUND_TRUTH_NAMES = ("ISIC_2019_Training_GroundTruth.csv",)



def find_ground_truth(root: str | Path) -> Path:
    root = Path(root)
    if root.is_file():
        return root
    for name in GROUND_TRUTH_NAMES:
        if (root / name).exists():
            return root / name
    raise DatasetError(f"{root}: no {GROUND_TRUTH_NAMES[0]} found; point --data at an ISIC 2019 style folder "
                       "(or create one with `mnet synth`)")


def read_ground_truth(path: str | Path) -> Labels:
    """One-hot CSV with columns image, MEL, ..., UNK (extra columns such as score_weight ignored)."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        missing = [name for name in ("image", *CLASS_NAMES) if name not in header]
        if missing:
            raise DatasetError(f"{path}: header lacks {missing}; expected image,{','.join(CLASS_NAMES)}")
        image_column = header.index("image")
        class_columns = [header.index(name) for name in CLASS_NAMES]
        images, targets = [], []
        for line, row in enumerate(reader, start=2):
            scores = np.array([float(row[i]) for i in class_columns])
            if not np.isclose(scores.sum(), 1.0):
                raise DatasetError(f"{path}:{line}: labels of {row[image_column]} are not one-hot")
            images.append(row[image_column])
            targets.append(int(scores.argmax()))
    return Labels(tuple(images), np.asarray(targets, np.int64))


def stratified_split(targets: np.ndarray, seed: int, fractions=(0.7, 0.15, 0.15)) -> dict[str, np.ndarray]:
    """Per class, shuffle with the seed and cut at the fractions (70/15/15 as in the paper)."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in SPLITS}
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        first = int(round(fractions[0] * len(members)))
        second = first + int(round(fractions[1] * len(members)))
        for name, piece in zip(SPLITS, (members[:first], members[first:second], members[second:])):
            parts[name].append(piece)
    return {name: np.sort(np.concatenate(pieces)) for name, pieces in parts.items()}


def class_weights(targets: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the classes present; 0 for absent classes (ISIC's UNK)."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def image_path(root: Path | dict, name: str) -> Path:
    """An image's file: looked up by name in a layout's index (HAM10000's several folders) or beside the CSV."""
    if isinstance(root, dict):
        return root[name]
    for suffix in (".jpg", ".jpeg", ".png"):
        candidate = root / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return root / f"{name}.jpg"


def find_missing(root: str | Path, labels: Labels) -> list[str]:
    root = Path(root)
    present = {p.stem for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    return [name for name in labels.images if name not in present]


def prepare_data(data: str | Path, seed: int, skip_missing: bool = False):
    """The folder's labels and its seeded 70/15/15 split: (image folder, labels, split name -> indices, missing
    image names). Missing images are an error naming the fix, or with `skip_missing` left out of every split."""
    root = Path(data)
    if root.is_dir() and is_ham10000(root):
        return prepare_ham10000(root, seed, skip_missing)
    labels = read_ground_truth(find_ground_truth(root))
    image_root = root if root.is_dir() else root.parent
    missing = find_missing(image_root, labels)
    splits = stratified_split(labels.targets, seed)
    if missing:
        if not skip_missing:
            raise DatasetError(missing_images_message(image_root, missing, len(labels.images)))
        present = ~np.isin(np.asarray(labels.images), missing)
        splits = {name: indices[present[indices]] for name, indices in splits.items()}
        if len(splits["train"]) == 0:
            raise DatasetError(f"{image_root}: every listed image is missing; nothing to train on")
    return image_root, labels, splits, missing

