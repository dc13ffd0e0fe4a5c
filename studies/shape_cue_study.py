"""Can a b0 trained from scratch learn the one cue that tells a nevus-like melanoma from a nevus (its asymmetric
outline)? Writes a two-class synthetic set in the ISIC 2019 layout (nevi, and melanomas drawn only from the
nevus-like subtype: the same size, colours and border, an asymmetric outline), trains on it with `mnet train`
and prints the loss and validation accuracy per epoch. Chance is 0.5 and a loss of ln 2 = 0.693.

    python studies/shape_cue_study.py OUT [--count 800] [--size 128] [--epochs 30] [--batch-size 16] [--no-hairs]

A model that cannot learn this cue on its own has no reason to give asymmetry a direction of its own in the
embedding, which is what FastCAV looks for (README, FastCAV section).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from melanomanet.data.synth import LesionParams, sample_params, write_dataset

MNET = [sys.executable, "-c", "from melanomanet.cli import app; app()"]


def draw_nevus_or_nevus_like_melanoma(rng: np.random.Generator, index: int, hairs: bool) -> LesionParams:
    if index % 2 == 0:
        return sample_params(rng, "NV", hairs=hairs)
    while True:
        params = sample_params(rng, "MEL", hairs=hairs)
        if params.subtype == "nevus_like":
            return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=800)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-hairs", action="store_true")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the synthetic draw.")
    args = parser.parse_args()
    data, run = args.out / "data", args.out / "run"
    write_dataset(data, args.count, args.seed, args.size, hairs=not args.no_hairs,
                  draw=draw_nevus_or_nevus_like_melanoma)
    subprocess.run(MNET + ["train", "--data", str(data), "--out", str(run), "--epochs", str(args.epochs),
                           "--image-size", str(args.size), "--batch-size", str(args.batch_size), "--lr", "1e-3"],
                   check=True)
    print("epoch  train loss  val accuracy (NV vs nevus-like MEL; chance 0.5, loss ln 2 = 0.693)")
    for row in json.loads((run / "history.json").read_text()):
        print(f"{row['epoch']:>5}  {row['train_loss']:>10.3f}  {row['val_accuracy']:>12.3f}")


if __name__ == "__main__":
    main()
