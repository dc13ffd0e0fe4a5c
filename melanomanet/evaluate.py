"""Evaluation of a checkpoint on a split of an ISIC-layout folder (the split seed is the training one):
our figures, the ISIC challenge figures (ours and the official scorer's), per-image predictions as an ISIC
CSV, the confusion matrix and ROC curves as PNGs, and bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from melanomanet.challenge import bootstrap_intervals, challenge_metrics, official_scores, write_probability_csv
from melanomanet.checkpoint import load_checkpoint
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.data.isic import DatasetError
from melanomanet.metrics import classification_report
from melanomanet.plots import confusion_png, roc_png
from melanomanet.train import TrainConfig, predict_loader, prepare_data


def evaluate(data: str, checkpoint: str, split: str = "test", batch_size: int = 32, skip_missing: bool = False,
             out: str | Path | None = None, bootstrap: int = 0, seed: int = 0) -> dict:
    """Figures for `split`; with `out`, also `predictions.csv`, `confusion.png` and `roc.png` there."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, manifest = load_checkpoint(checkpoint, device)
    split_seed = int(manifest.extra.get("split_seed", 0))
    image_root, labels, splits, missing = prepare_data(
        TrainConfig(data=data, out="", seed=split_seed, skip_missing=skip_missing))
    indices = splits[split]
    if len(indices) == 0:
        raise DatasetError(f"{data}: the {split} split is empty ({len(labels.images)} labelled images in all); "
                           "evaluate another --split, or a folder with more images per class")
    dataset = IsicDataset(image_root, labels, indices, manifest.preprocessing)
    images = [labels.images[i] for i in indices]
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
    probabilities, targets = predict_loader(model, loader, device)
    if len(targets) != len(indices):
        raise DatasetError(f"{data}: {len(indices) - len(targets)} images of the {split} split could not be "
                           "decoded; per-image predictions would not line up with their names. Fix or remove them")
    names = manifest.class_names
    report = classification_report(targets, probabilities, names)
    report.update({"split": split, "checkpoint": str(checkpoint), "trained_on": manifest.trained_on,
                   "missing_images": len(missing), "device": device,
                   "isic": challenge_metrics(targets, probabilities, names),
                   "isic_official": official_scores(images, targets, probabilities, names)})
    if bootstrap:
        report["bootstrap"] = bootstrap_intervals(targets, probabilities, names, bootstrap, seed)
    if out is not None:
        report["files"] = write_outputs(Path(out), images, targets, probabilities, report, names)
    return report


def write_outputs(out: Path, images, targets: np.ndarray, probabilities: np.ndarray, report: dict,
                  names) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    title = f"{report['split']} split, {len(targets)} images"
    aucs = {name: row["auc"] for name, row in report["per_class"].items()}
    files = {
        "predictions_csv": write_probability_csv(out / "predictions.csv", images, probabilities, names),
        "confusion_png": confusion_png(np.asarray(report["confusion_matrix"]), names, out / "confusion.png", title),
        "roc_png": roc_png(targets, probabilities, names, aucs, out / "roc.png", title),
    }
    return {key: str(path) for key, path in files.items()}
