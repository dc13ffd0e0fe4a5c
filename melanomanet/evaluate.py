"""Evaluation of a checkpoint on a split of an ISIC-layout folder (the split seed is the training one):
our figures, the ISIC challenge figures (ours and the official scorer's), risk-coverage of the MC uncertainty
scores, out-of-distribution separation, per-image predictions as an ISIC CSV, PNG figures, bootstrap intervals;
and `calibrate`, which fits the temperature and the referral rule on a split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from melanomanet.calibration import (
    CALIBRATION_SCHEMA,
    calibration_figures,
    choose_referral,
    fit_temperature,
    load_calibration,
    mc_scores,
    ood_separation,
    reliability_bins,
    risk_coverage,
)
from melanomanet.challenge import bootstrap_intervals, challenge_metrics, official_scores, write_probability_csv
from melanomanet.checkpoint import load_checkpoint
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.data.labels import Prepared
from melanomanet.data.layouts import prepare_data
from melanomanet.metrics import classification_report
from melanomanet.plots import confusion_png, reliability_png, risk_coverage_png, roc_png
from runtime.errors import DatasetError, ImageError
from runtime.imageio import load_image
from runtime.manifest import sha256_file
from runtime.preprocess import preprocess
from runtime.uncertainty import draw_mc_mask, softmax

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Outputs:
    """What the exported graph gives, computed in PyTorch: deterministic logits and the MC head's logits under
    the runtime's own mask (same T, same seed, same construction)."""

    images: list[str]
    targets: np.ndarray
    logits: np.ndarray
    mc_logits: np.ndarray


class Evaluator:
    def __init__(self, checkpoint: str | Path, mc_samples: int | None = None, seed: int = 0, batch_size: int = 32):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.checkpoint = Path(checkpoint)
        self.model, self.manifest = load_checkpoint(checkpoint, self.device)
        self.mc_samples = self.manifest.mc_samples if mc_samples is None else mc_samples
        self.seed = seed
        self.batch_size = batch_size
        mask = draw_mc_mask(self.mc_samples, self.model.num_features, self.manifest.dropout_p, seed)
        self.mc_mask = torch.from_numpy(mask).to(self.device)

    def split(self, data: str, split: str, skip_missing: bool = False,
              layout: str | None = None) -> tuple[Outputs, Prepared]:
        """Predict one part of the seeded split (the checkpoint's seed), or `all` of a folder never trained on."""
        prepared = prepare_data(data, self.manifest.split_seed, skip_missing, layout)
        image_root, labels, splits = prepared.image_root, prepared.labels, prepared.splits
        indices = np.sort(np.concatenate(list(splits.values()))) if split == "all" else splits[split]
        if len(indices) == 0:
            raise DatasetError(f"{data}: the {split} split is empty ({len(labels.images)} labelled images in all); "
                               "evaluate another --split, or a folder with more images per class")
        dataset = IsicDataset(image_root, labels, indices, self.manifest.preprocessing)
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, collate_fn=collate_skipping)
        collected: list[np.ndarray] = []

        def images():
            for batch, batch_targets, _ in loader:
                if batch is not None:
                    collected.append(batch_targets.numpy())
                    yield batch

        logits, mc_logits = self._run(images())
        targets = np.concatenate(collected) if collected else np.zeros(0, np.int64)
        if len(targets) != len(indices):
            raise DatasetError(f"{data}: {len(indices) - len(targets)} images of the {split} split could not be "
                               "decoded; per-image predictions would not line up with their names. Fix or remove them")
        return Outputs([labels.images[i] for i in indices], targets, logits, mc_logits), prepared

    def folder(self, folder: str | Path) -> Outputs:
        """Every image file in a folder (no labels): for the out-of-distribution check."""
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DatasetError(f"{folder}: no .jpg or .png images; make a set with mnet synth-ood")
        chunks = (torch.from_numpy(np.stack([self._tensor(path) for path in paths[start:start + self.batch_size]]))
                  for start in range(0, len(paths), self.batch_size))
        logits, mc_logits = self._run(chunks)
        return Outputs([p.name for p in paths], np.full(len(paths), -1), logits, mc_logits)

    def _tensor(self, path: Path) -> np.ndarray:
        try:
            return preprocess(load_image(path), self.manifest.preprocessing)
        except ImageError as error:
            raise DatasetError(f"{error}; remove it from the --ood folder") from None

    @torch.no_grad()
    def _run(self, batches) -> tuple[np.ndarray, np.ndarray]:
        """Logits and MC logits batch by batch, as the batches arrive (the split is never held in memory)."""
        head = self.model.head
        logits, mc_logits = [], []
        for images in batches:
            embedding = self.model.embed(self.model.forward_features(images.to(self.device))).float()
            logits.append(head(embedding).cpu().numpy())
            mc = torch.stack([head(embedding * keep) for keep in self.mc_mask], dim=1)
            mc_logits.append(mc.cpu().numpy())
        if not logits:
            return np.zeros((0, head.out_features)), np.zeros((0, self.mc_samples, head.out_features))
        return np.concatenate(logits).astype(np.float64), np.concatenate(mc_logits).astype(np.float64)


def evaluate(data: str, checkpoint: str, split: str = "test", batch_size: int = 32, skip_missing: bool = False,
             out: str | Path | None = None, bootstrap: int = 0, seed: int = 0, mc_samples: int | None = None,
             calibration: str | Path | None = None, ood: str | Path | None = None,
             layout: str | None = None) -> dict:
    """Figures for `split`; with `out`, also `predictions.csv`, `confusion.png`, `roc.png` and
    `risk_coverage.png` there. `calibration` applies a `mnet calibrate` temperature; `ood` scores a folder of
    images that are not lesions against the split."""
    evaluator = Evaluator(checkpoint, mc_samples, seed, batch_size)
    outputs, prepared = evaluator.split(data, split, skip_missing, layout)
    missing = len(prepared.missing)
    temperature = load_calibration(calibration, sha256_file(checkpoint))[0] if calibration else 1.0
    probabilities = softmax(outputs.logits / temperature)
    names = evaluator.manifest.class_names
    targets = outputs.targets
    scores = mc_scores(outputs.mc_logits, temperature)
    report = classification_report(targets, probabilities, names)
    report.update({"split": split, "checkpoint": str(checkpoint), "trained_on": evaluator.manifest.trained_on,
                   "data": prepared.describe(), "missing_images": missing, "device": evaluator.device,
                   "temperature": temperature,
                   "mc": {"samples": evaluator.mc_samples, "seed": seed},
                   "isic": challenge_metrics(targets, probabilities, names),
                   "isic_official": official_scores(outputs.images, targets, probabilities, names),
                   "calibration": calibration_figures(probabilities, targets),
                   "risk_coverage": risk_coverage(scores, probabilities.argmax(axis=1), targets)})
    if ood is not None:
        outside = evaluator.folder(ood)
        report["ood"] = {"folder": str(ood), "images": len(outside.images),
                         "auroc": ood_separation(scores, mc_scores(outside.mc_logits, temperature))}
    if bootstrap:
        report["bootstrap"] = bootstrap_intervals(targets, probabilities, names, bootstrap, seed)
    if out is not None:
        report["files"] = write_outputs(Path(out), outputs.images, targets, probabilities, report, names)
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
        "risk_coverage_png": risk_coverage_png(report["risk_coverage"], out / "risk_coverage.png",
                                               f"{title}, MC T={report['mc']['samples']}"),
    }
    return {key: str(path) for key, path in files.items()}


def calibrate(data: str, checkpoint: str, out: str | Path, split: str = "val", score: str = "predictive",
              referral_rate: float | None = None, target_sensitivity: str | None = None,
              mc_samples: int | None = None, seed: int = 0, layout: str | None = None) -> dict:
    """Fit the temperature on `split` (NLL), choose the referral rule there, write `out` (JSON) and a
    reliability diagram beside it (`<out stem>.png`)."""
    evaluator = Evaluator(checkpoint, mc_samples, seed)
    outputs, prepared = evaluator.split(data, split, layout=layout)
    names = list(evaluator.manifest.class_names)
    temperature = fit_temperature(outputs.logits, outputs.targets)
    before, after = softmax(outputs.logits), softmax(outputs.logits / temperature)
    figures = {"before": calibration_figures(before, outputs.targets),
               "after": calibration_figures(after, outputs.targets)}
    referral = None
    if referral_rate is not None or target_sensitivity is not None:
        referral = choose_referral(outputs.logits, outputs.mc_logits, outputs.targets, temperature, names, score,
                                   referral_rate, target_sensitivity)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = reliability_png({"before": reliability_bins(before, outputs.targets),
                               "after": reliability_bins(after, outputs.targets)}, figures,
                              out.with_suffix(".png"),
                              f"{split} split, {len(outputs.targets)} images, temperature {temperature:.3f}")
    report = {"schema": CALIBRATION_SCHEMA, "checkpoint": str(checkpoint), "data": prepared.describe(),
              "checkpoint_sha256": sha256_file(checkpoint), "split": split, "images": len(outputs.targets),
              "temperature": temperature, **figures, "referral": referral,
              "mc": {"samples": evaluator.mc_samples, "seed": seed}, "reliability_png": str(picture),
              "trained_on": evaluator.manifest.trained_on}
    out.write_text(json.dumps(report, indent=2))
    return report

