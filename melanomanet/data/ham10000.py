"""HAM10000 as the Harvard Dataverse release publishes it: `HAM10000_metadata.csv` (lesion_id, image_id, dx, ...)
beside one or more image folders (`images/`, or the release's `HAM10000_images_part_1/` and `_part_2/`).

Several images show the same lesion, so the split is by `lesion_id`: a lesion's images are all in one split,
and lesions are stratified by diagnosis, seeded. Diagnoses map onto the ISIC 2019 classes as ISIC 2019 itself
maps them (`akiec` holds actinic keratoses and intraepithelial carcinoma, so AK); SCC and UNK do not occur."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Labels, Release, image_files
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

METADATA = "HAM10000_metadata.csv"
CLASS_MAP = {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AK", "bkl": "BKL", "df": "DF", "vasc": "VASC"}
IMAGE_FOLDERS = ("images", "HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")


def is_ham10000(root: Path) -> bool:
    return (root / METADATA).is_file()


def read_metadata(root: str | Path) -> list[dict]:
    with open(Path(root) / METADATA, newline="") as handle:
        return list(csv.DictReader(handle))


def read_ham10000(root: str | Path) -> Release:
    """Every labelled image: the files by image id, the labels (ISIC 2019 classes) and each image's lesion id.
    A diagnosis outside the release's seven is an error naming it."""
    root = Path(root)
    files = image_files(*(root / folder for folder in IMAGE_FOLDERS))
    if not files:
        raise DatasetError(f"{root}: {METADATA} but no images in {', '.join(IMAGE_FOLDERS)}; put the release's "
                           "image folders beside it")
    rows = read_metadata(root)
    unknown = sorted({row["dx"] for row in rows} - set(CLASS_MAP))
    if unknown:
        raise DatasetError(f"{root / METADATA}: diagnoses {unknown} are not HAM10000's seven "
                           f"({', '.join(CLASS_MAP)})")
    labels = Labels(tuple(row["image_id"] for row in rows),
                    np.asarray([CLASS_NAMES.index(CLASS_MAP[row["dx"]]) for row in rows], np.int64))
    groups = np.asarray([row["lesion_id"] for row in rows])
    return Release("ham10000", files, labels, CLASS_MAP, groups, grouped_by="lesion_id")
