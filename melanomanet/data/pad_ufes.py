"""PAD-UFES-20 (Pacheco et al., Data in Brief 2020): smartphone clinical photos, not dermoscopy, as published:
`metadata.csv` (`img_id`, `diagnostic`, and patient and lesion ids) beside the image folders (`images/`, or the
release's `imgs_part_1/`, `_2/`, `_3/`). Images are matched by name whatever their extension (the release's
PNGs, or JPEG re-encodings). Split by patient: one patient's lesions never fall in two splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Labels, Release, image_files
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

METADATA = "metadata.csv"
CLASS_MAP = {"MEL": "MEL", "NEV": "NV", "BCC": "BCC", "ACK": "AK", "SEK": "BKL", "SCC": "SCC"}
IMAGE_FOLDERS = ("images", "imgs_part_1", "imgs_part_2", "imgs_part_3")


def is_pad_ufes(root: Path) -> bool:
    if not (root / METADATA).is_file():
        return False
    with open(root / METADATA, newline="") as handle:
        header = next(csv.reader(handle), [])
    return "img_id" in header and "diagnostic" in header


def patient_of(row: dict) -> str:
    """The release's patient_id column, or the patient in the image name (PAT_<patient>_<lesion>_<n>)."""
    if row.get("patient_id"):
        return row["patient_id"]
    parts = Path(row["img_id"]).stem.split("_")
    return "_".join(parts[:2]) if len(parts) >= 2 else row["img_id"]


def read_pad_ufes(root: Path) -> Release:
    files = image_files(*(root / folder for folder in IMAGE_FOLDERS))
    with open(root / METADATA, newline="") as handle:
        rows = list(csv.DictReader(handle))
    unknown = sorted({row["diagnostic"] for row in rows} - set(CLASS_MAP))
    if unknown:
        raise DatasetError(f"{root / METADATA}: diagnostics {unknown} are not PAD-UFES-20's "
                           f"({', '.join(CLASS_MAP)})")
    labels = Labels(tuple(Path(row["img_id"]).stem for row in rows),
                    np.asarray([CLASS_NAMES.index(CLASS_MAP[row["diagnostic"]]) for row in rows], np.int64))
    groups = np.asarray([patient_of(row) for row in rows])
    return Release("pad-ufes-20", files, labels, CLASS_MAP, groups, grouped_by="patient")
