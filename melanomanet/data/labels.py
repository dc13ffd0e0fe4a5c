"""What every data-set layout yields: image names with their ISIC 2019 class, the split names, the seeded split
(grouped by lesion or patient where a set has one), and what was found, said to the user and recorded in the
manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import DatasetError
from runtime.imageio import IMAGE_SUFFIXES
from runtime.manifest import CLASS_NAMES

SPLITS = ("train", "val", "test")
FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class Labels:
    images: tuple[str, ...]
    targets: np.ndarray

    def counts(self) -> dict[str, int]:
        counted = np.bincount(self.targets, minlength=len(CLASS_NAMES))
        return {name: int(n) for name, n in zip(CLASS_NAMES, counted)}


@dataclass(frozen=True)
class Release:
    """A layout read as published: the image files by name, the labels mapped onto the ISIC 2019 classes, each
    image's group (lesion or patient) where the set has one, and the set's own class names -> ISIC 2019."""

    layout: str
    files: dict[str, Path]
    labels: Labels
    class_map: dict[str, str]
    groups: np.ndarray | None = None
    grouped_by: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A data folder read in its layout: where each image is, the labels, the seeded split, the images listed
    without a file, the image files without a label, and what the manifest records of it."""

    image_root: Path | dict
    labels: Labels
    splits: dict[str, np.ndarray]
    missing: list[str]
    layout: str
    class_map: dict[str, str]
    grouped_by: str | None = None
    unlabelled: list[str] = field(default_factory=list)

    def record(self, seed: int) -> dict:
        """What the checkpoint and bundle manifests keep: the layout, the class mapping, the classes the data
        lacks, and the split (method, seed, counts per class, a sha256 of each part's sorted image names)."""
        names = np.asarray(self.labels.images)
        parts = {}
        for part, indices in self.splits.items():
            counts = np.bincount(self.labels.targets[indices], minlength=len(CLASS_NAMES))
            parts[part] = {"images": int(len(indices)),
                           "per_class": {name: int(n) for name, n in zip(CLASS_NAMES, counts) if n},
                           "sha256": hashlib.sha256("\n".join(sorted(names[indices])).encode()).hexdigest()}
        return {"layout": self.layout, "class_map": dict(self.class_map),
                "absent_classes": self.absent_classes(), "missing_images": len(self.missing),
                "split": {"seed": seed, "fractions": list(FRACTIONS), "grouped_by": self.grouped_by,
                          "stratified_by": "class", "parts": parts}}

    def absent_classes(self) -> list[str]:
        return [name for name, n in self.labels.counts().items() if not n]

    def describe(self) -> str:
        """What was found, for the user: counts per class, the classes the data lacks (never learnt from it),
        labels without images and images without labels, and how the split was made."""
        found = ", ".join(f"{name} {n:,}" for name, n in self.labels.counts().items() if n)
        lines = [f"{self.layout}: {len(self.labels.images):,} labelled images ({found})"]
        if self.absent_classes():
            lines.append(f"absent, so never learnt or measured from this data: {', '.join(self.absent_classes())}")
        if self.missing:
            lines.append(f"{len(self.missing):,} labels without an image ({_first(self.missing)}), left out")
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled):,} images without a label ({_first(self.unlabelled)}), ignored")
        sizes = " / ".join(f"{part} {len(self.splits[part]):,}" for part in SPLITS)
        grouped = f", grouped by {self.grouped_by}" if self.grouped_by else ""
        lines.append(f"split {sizes} (stratified by class{grouped})")
        return "\n".join(lines)


def _first(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


def image_files(*folders: Path) -> dict[str, Path]:
    """Image files by name (stem) in the folders that exist."""
    return {path.stem: path for folder in folders if folder.is_dir()
            for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES}


def missing_images_message(root: Path, missing: list[str], total: int) -> str:
    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    return (f"{root}: {len(missing):,} of {total:,} images listed in the ground-truth CSV are missing "
            f"({shown}). Put the images beside the CSV as the release has them, or pass --skip-missing to use "
            "the rest.")


def stratified_split(targets: np.ndarray, seed: int, fractions=FRACTIONS) -> dict[str, np.ndarray]:
    """Per class, shuffle with the seed and cut at the fractions (70/15/15 as in the paper)."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in SPLITS}
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        first = int(round(fractions[0] * len(members)))
        second = first + int(round(fractions[1] * len(members)))
        for name, piece in zip(SPLITS, (members[:first], members[first:second], members[second:])):
            parts[name].append(piece)
    return {name: np.sort(np.concatenate(pieces)) if pieces else np.zeros(0, np.int64)
            for name, pieces in parts.items()}


def grouped_split(targets: np.ndarray, groups: np.ndarray, seed: int, fractions=FRACTIONS) -> dict[str, np.ndarray]:
    """A seeded split in which every group (lesion, patient) falls in one part, groups stratified by their first
    image's class and cut at the fractions of each class's groups."""
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


def prepare_release(release: Release, root: Path, seed: int, skip_missing: bool) -> Prepared:
    """Split a release (by its groups where it has them, else by image), leaving out labels without an image
    (an error unless `skip_missing`), and note the image files without a label."""
    labels = release.labels
    missing = [name for name in labels.images if name not in release.files]
    if missing and not skip_missing:
        raise DatasetError(missing_images_message(root, missing, len(labels.images)))
    if release.groups is not None:
        splits = grouped_split(labels.targets, release.groups, seed)
    else:
        splits = stratified_split(labels.targets, seed)
    if missing:
        present = np.isin(np.asarray(labels.images), list(release.files))
        splits = {name: indices[present[indices]] for name, indices in splits.items()}
        if not any(len(indices) for indices in splits.values()):
            raise DatasetError(f"{root}: every listed image is missing; nothing to use")
    labelled = set(labels.images)
    unlabelled = sorted(name for name in release.files if name not in labelled)
    return Prepared(release.files, labels, splits, missing, release.layout, release.class_map, release.grouped_by,
                    unlabelled)
