"""Test-time flips for a checkpoint (issue 43): the held-out split scored without and with the mean softmax over
the image and its horizontal, vertical and both-way flips, with stratified bootstrap intervals. Reproduces the
"test-time flips" row of docs/training.md. A study only: the bundle's contract has no flips.

    python studies/flip_tta.py --checkpoint RUN/best.safetensors --data HAM10000_DIR [--split test] [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from melanomanet.challenge import bootstrap_intervals, challenge_metrics
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.data.layouts import prepare_data
from melanomanet.evaluate import Evaluator
from runtime.uncertainty import softmax

FLIPS = {"none": [], "horizontal": [3], "vertical": [2], "both": [2, 3]}


@torch.no_grad()
def flip_probabilities(evaluator: Evaluator, data: str, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    prepared = prepare_data(data, evaluator.manifest.split_seed)
    dataset = IsicDataset(prepared.image_root, prepared.labels, prepared.splits[split],
                          evaluator.manifest.preprocessing)
    loader = torch.utils.data.DataLoader(dataset, batch_size=evaluator.batch_size, collate_fn=collate_skipping)
    targets, probabilities = [], {name: [] for name in FLIPS}
    for images, batch_targets, _ in loader:
        targets.append(batch_targets.numpy())
        for name, dims in FLIPS.items():
            logits = evaluator.model(images.flip(dims) if dims else images)
            probabilities[name].append(softmax(logits.double().numpy()))
    return np.concatenate(targets), {name: np.concatenate(rows) for name, rows in probabilities.items()}


def figures(targets: np.ndarray, probabilities: np.ndarray, names) -> dict:
    from sklearn.metrics import roc_auc_score

    mel = names.index("MEL")
    return {**challenge_metrics(targets, probabilities, names),
            "mel_auc": float(roc_auc_score(targets == mel, probabilities[:, mel])),
            "bootstrap": bootstrap_intervals(targets, probabilities, names, 1000, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--json")
    arguments = parser.parse_args()
    evaluator = Evaluator(arguments.checkpoint, None, 0, 32)
    names = list(evaluator.manifest.class_names)
    targets, by_flip = flip_probabilities(evaluator, arguments.data, arguments.split)
    results = {"single view": figures(targets, by_flip["none"], names),
               "mean of 4 flips": figures(targets, np.mean(list(by_flip.values()), axis=0), names)}
    print(json.dumps(results, indent=2))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
