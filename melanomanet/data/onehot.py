"""The ISIC challenges' one-hot ground-truth CSVs: an `image` column and one column per class."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melanomanet.data.labels import Labels
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES


def read_one_hot(path: str | Path, class_map: dict[str, str]) -> Labels:
    """Rows of image, then the columns of `class_map` (the CSV's class -> ISIC 2019 class); other columns
    (ISIC 2019's score_weight) ignored. A row that is not one-hot is an error naming its line."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [name for name in ("image", *class_map) if name not in header]
        if missing:
            raise DatasetError(f"{path}: header lacks {missing}; expected image,{','.join(class_map)}")
        image_column = header.index("image")
        columns = [header.index(name) for name in class_map]
        targets_of_column = [CLASS_NAMES.index(target) for target in class_map.values()]
        images, targets = [], []
        for line, row in enumerate(reader, start=2):
            scores = np.array([float(row[i]) for i in columns])
            if not np.isclose(scores.sum(), 1.0):
                raise DatasetError(f"{path}:{line}: labels of {row[image_column]} are not one-hot")
            images.append(row[image_column])
            targets.append(targets_of_column[int(scores.argmax())])
    return Labels(tuple(images), np.asarray(targets, np.int64))
