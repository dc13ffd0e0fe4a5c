"""A torch Dataset over an ISIC-layout folder; decoding and preprocessing are the runtime's own."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from melanomanet.data.augment import augment
from melanomanet.data.isic import Labels, image_path
from runtime.errors import ImageError
from runtime.imageio import load_image
from runtime.manifest import Preprocessing
from runtime.preprocess import preprocess


class IsicDataset(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, labels: Labels, indices: np.ndarray, preprocessing: Preprocessing,
                 train: bool = False, seed: int = 0):
        self.root = Path(root)
        self.labels = labels
        self.indices = np.asarray(indices)
        self.preprocessing = preprocessing
        self.train = train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = int(self.indices[position])
        path = image_path(self.root, self.labels.images[index])
        try:
            image = load_image(path)
        except ImageError as error:
            warnings.warn(f"skipping corrupt image: {error}", stacklevel=1)
            return None
        if self.train:
            image = augment(image, self.rng)
        return torch.from_numpy(preprocess(image, self.preprocessing)), int(self.labels.targets[index])


def collate_skipping(batch):
    """Drop the items that failed to decode; report how many were dropped."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images, targets = zip(*kept)
    return torch.stack(images), torch.tensor(targets), skipped
