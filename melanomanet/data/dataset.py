"""A torch Dataset over a prepared data folder (its image files by name); decoding and preprocessing are the
runtime's own."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from melanomanet.data.augment import augment
from melanomanet.data.labels import Labels
from runtime.errors import ImageError
from runtime.imageio import load_image
from runtime.manifest import Preprocessing
from runtime.preprocess import preprocess


class IsicDataset(torch.utils.data.Dataset):
    def __init__(self, files: dict[str, Path], labels: Labels, indices: np.ndarray, preprocessing: Preprocessing,
                 train: bool = False, seed: int = 0):
        self.files = files
        self.labels = labels
        self.indices = np.asarray(indices)
        self.preprocessing = preprocessing
        self.train = train
        self.rng = np.random.default_rng(seed)
        self._worker_rng = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = int(self.indices[position])
        path = self.files[self.labels.images[index]]
        try:
            image = load_image(path)
        except ImageError as error:
            warnings.warn(f"skipping corrupt image: {error}", stacklevel=1)
            return None
        if self.train:
            image = augment(image, self._generator())
        return torch.from_numpy(preprocess(image, self.preprocessing)), int(self.labels.targets[index])


    def _generator(self) -> np.random.Generator:
        """In a DataLoader worker, a generator of its own (seeded by the loader per worker and epoch),
        so that workers do not repeat each other's augmentations."""
        worker = torch.utils.data.get_worker_info()
        if worker is None:
            return self.rng
        if self._worker_rng is None:
            self._worker_rng = np.random.default_rng(worker.seed)
        return self._worker_rng


def collate_skipping(batch):
    """Drop the items that failed to decode; report how many were dropped."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images, targets = zip(*kept)
    return torch.stack(images), torch.tensor(targets), skipped
