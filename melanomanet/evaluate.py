"""Evaluation of a checkpoint on a split of an ISIC-layout folder (the split seed is the training one)."""

from __future__ import annotations

import torch

from melanomanet.checkpoint import load_checkpoint
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.train import TrainConfig, evaluate_loader, prepare_data


def evaluate(data: str, checkpoint: str, split: str = "test", batch_size: int = 32,
             skip_missing: bool = False) -> dict:
    model, manifest = load_checkpoint(checkpoint)
    seed = int(manifest.extra.get("split_seed", 0))
    image_root, labels, splits, missing = prepare_data(
        TrainConfig(data=data, out="", seed=seed, skip_missing=skip_missing))
    loader = torch.utils.data.DataLoader(
        IsicDataset(image_root, labels, splits[split], manifest.preprocessing),
        batch_size=batch_size, collate_fn=collate_skipping)
    report = evaluate_loader(model, loader, "cpu", manifest.class_names)
    return {**report, "split": split, "checkpoint": str(checkpoint), "trained_on": manifest.trained_on,
            "missing_images": len(missing)}
