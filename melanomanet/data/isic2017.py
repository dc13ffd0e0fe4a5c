"""ISIC 2017 as published: the Part 3 ground truth (`image_id,melanoma,seborrheic_keratosis`) beside the images
(`images/` or the release's `ISIC-2017_*_Data/`), with the Part 1 lesion masks (`<id>_segmentation.png`) in
`masks/` or `ISIC-2017_*_Part1_GroundTruth/`. Melanoma is MEL, seborrheic keratosis BKL (as ISIC 2019 files it),
every other lesion NV (the challenge's third class, benign nevi)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Labels, Release, image_files
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

CLASS_MAP = {"melanoma": "MEL", "seborrheic_keratosis": "BKL", "nevus": "NV"}


def ground_truth(root: Path) -> Path | None:
    found = sorted(root.glob("ISIC-2017*Part3*GroundTruth*.csv"))
    return found[0] if found else None


def is_isic2017(root: Path) -> bool:
    return ground_truth(root) is not None


def mask_files(root: Path) -> dict[str, Path]:
    folders = [root / "masks", *sorted(root.glob("ISIC-2017*Part1_GroundTruth"))]
    return {path.stem.removesuffix("_segmentation"): path for path in image_files(*folders).values()}


def read_isic2017(root: Path) -> Release:
    path = ground_truth(root)
    files = image_files(root / "images", *sorted(p for p in root.glob("ISIC-2017*_Data") if p.is_dir()))
    files = {name: file for name, file in files.items() if not name.endswith("_superpixels")}
    images, targets = [], []
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            melanoma, keratosis = float(row["melanoma"]), float(row["seborrheic_keratosis"])
            if melanoma and keratosis:
                raise DatasetError(f"{path}:{line}: {row['image_id']} is labelled both melanoma and seborrheic "
                                   "keratosis")
            name = "melanoma" if melanoma else "seborrheic_keratosis" if keratosis else "nevus"
            images.append(row["image_id"])
            targets.append(CLASS_NAMES.index(CLASS_MAP[name]))
    return Release("isic2017", files, Labels(tuple(images), np.asarray(targets, np.int64)), CLASS_MAP)
