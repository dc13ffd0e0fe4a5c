"""What every data-set layout yields: image names with their ISIC 2019 class, the split names, and the message
for images listed without a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.manifest import CLASS_NAMES

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Labels:
    images: tuple[str, ...]
    targets: np.ndarray

    def counts(self) -> dict[str, int]:
        counted = np.bincount(self.targets, minlength=len(CLASS_NAMES))
        return {name: int(n) for name, n in zip(CLASS_NAMES, counted)}


def missing_images_message(root: Path, missing: list[str], total: int) -> str:
    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    return (f"{root}: {len(missing):,} of {total:,} images listed in the ground-truth CSV are missing "
            f"({shown}). Put the ISIC 2019 images beside the CSV, or pass --skip-missing to train on the rest.")
