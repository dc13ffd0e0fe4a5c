"""PH2 (Mendonca et al., EMBC 2013) as published: `PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`
with `IMDxxx_lesion/IMDxxx_lesion.bmp` and the `||`-table `PH2_dataset.txt`; or flattened (`images/IMDxxx.jpg`,
`masks/IMDxxx_lesion.png`, `PH2_annotations.csv`). Common and atypical nevi are NV, melanomas MEL.

Besides the diagnosis, PH2 holds the dermatologists' ABCD-rule annotations (asymmetry, pigment network,
dots/globules, streaks, regression, blue-whitish veil, colours), read here into one plain record per image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Labels, Release, image_files
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

ANNOTATIONS = "PH2_annotations.csv"
PUBLISHED_TABLE = "PH2_dataset.txt"
PUBLISHED_IMAGES = "PH2 Dataset images"
CLASS_MAP = {"common_nevus": "NV", "atypical_nevus": "NV", "melanoma": "MEL"}
CLINICAL_CODES = {"0": "common_nevus", "1": "atypical_nevus", "2": "melanoma"}
COLOURS = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
STRUCTURES = ("pigment_network", "dots_globules", "streaks", "regression", "blue_whitish_veil")
PUBLISHED_COLUMNS = {"name": "image", "histological diagnosis": "histology", "clinical diagnosis": "diagnosis",
                     "asymmetry": "asymmetry", "pigment network": "pigment_network",
                     "dots/globules": "dots_globules", "streaks": "streaks", "regression areas": "regression",
                     "blue-whitish veil": "blue_whitish_veil", "colors": "colors"}


def is_ph2(root: Path) -> bool:
    return (root / ANNOTATIONS).is_file() or (root / PUBLISHED_TABLE).is_file()


def read_annotations(root: str | Path) -> list[dict]:
    """One record per image: image, diagnosis (common_nevus, atypical_nevus, melanoma), asymmetry (0, 1, 2),
    the structures as the table codes them (T, AT, A, P) and each colour as 0 or 1."""
    root = Path(root)
    if (root / ANNOTATIONS).is_file():
        with open(root / ANNOTATIONS, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row["asymmetry"] = int(row["asymmetry"])
            for colour in COLOURS:
                row[colour] = int(row[colour])
    elif (root / PUBLISHED_TABLE).is_file():
        rows = read_published_table(root / PUBLISHED_TABLE)
    else:
        raise DatasetError(f"{root}: neither {ANNOTATIONS} nor the release's {PUBLISHED_TABLE}; point at the PH2 "
                           "folder that holds one")
    unknown = sorted({row["diagnosis"] for row in rows} - set(CLASS_MAP))
    if unknown:
        raise DatasetError(f"{root}: diagnoses {unknown} are not PH2's ({', '.join(CLASS_MAP)})")
    return rows


def read_published_table(path: Path) -> list[dict]:
    """The release's `||`-separated table; cells located by the header's column names. The clinical diagnosis is
    coded 0 common nevus, 1 atypical nevus, 2 melanoma; the colours cell lists codes 1-6 (white ... black)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip().startswith("|")]
    if not lines:
        raise DatasetError(f"{path}: no '||' table rows; is this PH2's {PUBLISHED_TABLE}?")
    header = [cell.lower() for cell in _cells(lines[0])]
    missing = [name for name in PUBLISHED_COLUMNS if name not in header]
    if missing:
        raise DatasetError(f"{path}: header lacks {missing}")
    where = {key: header.index(name) for name, key in PUBLISHED_COLUMNS.items()}
    rows = []
    for line in lines[1:]:
        cells = _cells(line)
        if len(cells) < len(header) or not cells[where["image"]].startswith("IMD"):
            continue
        codes = set(cells[where["colors"]].split())
        row = {key: cells[index] for key, index in where.items() if key != "colors"}
        row["diagnosis"] = CLINICAL_CODES.get(row["diagnosis"], row["diagnosis"])
        row["asymmetry"] = int(row["asymmetry"])
        row.update({colour: int(str(code) in codes) for code, colour in enumerate(COLOURS, start=1)})
        rows.append(row)
    return rows


def _cells(line: str) -> list[str]:
    """A table row's cells, whether columns are separated by `||` or by `|`."""
    return [cell.strip() for cell in line.strip().strip("|").replace("||", "|").split("|")]


def image_and_mask_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    flat = image_files(root / "images")
    if flat:
        masks = {path.stem.removesuffix("_lesion"): path for path in image_files(root / "masks").values()}
        return flat, masks
    cases = root / PUBLISHED_IMAGES
    images, masks = {}, {}
    if cases.is_dir():
        for case in sorted(p for p in cases.iterdir() if p.is_dir()):
            images.update(image_files(case / f"{case.name}_Dermoscopic_Image"))
            masks.update({case.name: p for p in image_files(case / f"{case.name}_lesion").values()})
    return images, masks


def read_ph2(root: Path) -> Release:
    rows = read_annotations(root)
    images, _ = image_and_mask_files(root)
    labels = Labels(tuple(row["image"] for row in rows),
                    np.asarray([CLASS_NAMES.index(CLASS_MAP[row["diagnosis"]]) for row in rows], np.int64))
    return Release("ph2", images, labels, CLASS_MAP)
