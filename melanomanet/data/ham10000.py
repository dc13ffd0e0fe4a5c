"""HAM10000 as the Harvard Dataverse release publishes it: `HAM10000_metadata.csv` (lesion_id, image_id, dx, ...)
beside one or more image folders (`images/`, or the release's `HAM10000_images_part_1/` and `_part_2/`).

Several images show the same lesion, so the split is by `lesion_id`: a lesion's images are all in one split,
and lesions are stratified by diagnosis, seeded. Diagnoses map onto the ISIC 2019 classes as ISIC 2019 itself
maps them (`akiec` holds actinic keratoses and intraepithelial carcinoma, so AK); SCC and UNK do not occur."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import SPLITS, Labels, missing_images_message
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

METADATA = "HAM10000_metadata.csv"
CLASS_MAP = {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AK", "bkl": "BKL", "df": "DF", "vasc": "VASC"}
IMAGE_FOLDERS = ("images", "HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")


def is_ham10000(root: Path) -> bool:
    return (root / METADATA).is_file()


def read_ham10000(root: str | Path) -> tuple[dict[str, Path], Labels, np.ndarray]:
    """Every labelled image found: its path by image id, the labels (ISIC 2019 classes) and each image's lesion
    id. Images listed without a file, or a diagnosis outside the release's seven, are errors naming them."""
    root = Path(root)
    files = {path.stem: path for folder in IMAGE_FOLDERS if (root / folder).is_dir()
             for path in (root / folder).iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png")}
    if not files:
        raise DatasetError(f"{root}: {METADATA} but no images in {', '.join(IMAGE_FOLDERS)}; put the release's "
                           "image folders beside it")
    images, targets, lesions, unknown = [], [], [], set()
    with open(root / METADATA, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["dx"] not in CLASS_MAP:
                unknown.add(row["dx"])
                continue
            images.append(row["image_id"])
            targets.append(CLASS_NAMES.index(CLASS_MAP[row["dx"]]))
            lesions.append(row["lesion_id"])
    if unknown:
        raise DatasetError(f"{root / METADATA}: diagnoses {sorted(unknown)} are not HAM10000's seven "
                           f"({', '.join(CLASS_MAP)})")
    return files, Labels(tuple(images), np.asarray(targets, np.int64)), np.asarray(lesions)


def grouped_split(targets: np.ndarray, groups: np.ndarray, seed: int,
                  fractions=(0.7, 0.15, 0.15)) -> dict[str, np.ndarray]:
    """A seeded split of the images in which every group (lesion) falls in one part, groups stratified by class
    (a lesion's images share its diagnosis) and cut at the fractions of each class's groups."""
    rng = np.random.default_rng(seed)
    names, first = np.unique(groups, return_index=True)
    group_class = targets[first]
    assigned = {}
    for label in np.unique(group_class):
        members = rng.permutation(names[group_class == label])
        cut = int(round(fractions[0] * len(members)))
        cut2 = cut + int(round(fractions[1] * len(members)))
        for part, piece in zip(SPLITS, (members[:cut], members[cut:cut2], members[cut2:])):
            assigned.update(dict.fromkeys(piece.tolist(), part))
    where = np.array([assigned[group] for group in groups])
    return {part: np.flatnonzero(where == part) for part in SPLITS}


def describe(labels: Labels, missing: list[str]) -> str:
    """What was found: counts per class, classes absent, images listed without a file."""
    counts = labels.counts()
    found = ", ".join(f"{name} {n:,}" for name, n in counts.items() if n)
    absent = [name for name, n in counts.items() if not n]
    return (f"HAM10000: {len(labels.images):,} labelled images ({found}); absent, so never predicted from this data: "
            f"{', '.join(absent)}" + (f"; {len(missing):,} listed without a file" if missing else ""))


def prepare_ham10000(root: Path, seed: int, skip_missing: bool):
    """`prepare_data` for the HAM10000 release: split by lesion (no lesion in two splits), stratified by class."""
    files, labels, lesions = read_ham10000(root)
    missing = [name for name in labels.images if name not in files]
    if missing and not skip_missing:
        raise DatasetError(missing_images_message(root, missing, len(labels.images)))
    splits = grouped_split(labels.targets, lesions, seed)
    if missing:
        present = np.isin(np.asarray(labels.images), list(files))
        splits = {name: indices[present[indices]] for name, indices in splits.items()}
    return files, labels, splits, missing
