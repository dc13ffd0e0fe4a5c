"""The data-set layouts `mnet train/eval/calibrate --data DIR` read, recognised from their label files or named
with `--layout`: each yields a `Release` (files, labels in the ISIC 2019 classes, groups), split the same way."""

from __future__ import annotations

from pathlib import Path

from melanomanet.data.ham10000 import is_ham10000, read_ham10000
from melanomanet.data.isic import find_ground_truth, is_isic2019, read_isic2019
from melanomanet.data.isic2017 import is_isic2017, read_isic2017
from melanomanet.data.isic2018 import is_isic2018, read_isic2018
from melanomanet.data.labels import Prepared, prepare_release
from melanomanet.data.pad_ufes import is_pad_ufes, read_pad_ufes
from melanomanet.data.ph2 import is_ph2, read_ph2
from runtime.errors import ConfigError

LAYOUTS = {
    "ham10000": (is_ham10000, read_ham10000),
    "isic2018": (is_isic2018, read_isic2018),
    "isic2017": (is_isic2017, read_isic2017),
    "ph2": (is_ph2, read_ph2),
    "pad-ufes-20": (is_pad_ufes, read_pad_ufes),
    "isic2019": (is_isic2019, read_isic2019),
}


def detect_layout(root: Path) -> str:
    """The first layout whose label file is in the folder; ISIC 2019 (a one-hot CSV, or the CSV itself) last."""
    for name, (recognises, _) in LAYOUTS.items():
        if recognises(root):
            return name
    find_ground_truth(root)
    raise AssertionError("find_ground_truth raises when no layout is found")


def prepare_data(data: str | Path, seed: int, skip_missing: bool = False, layout: str | None = None) -> Prepared:
    """The folder read in its layout (recognised, or `layout`), split 70/15/15 with the seed: by lesion or patient
    where the set records one, stratified by class. Labels without an image are an error naming them, or with
    `skip_missing` left out of every split."""
    root = Path(data)
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r} is not one of: {', '.join(LAYOUTS)}")
    name = layout or detect_layout(root)
    release = LAYOUTS[name][1](root)
    return prepare_release(release, root if root.is_dir() else root.parent, seed, skip_missing)
