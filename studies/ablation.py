"""The ablation of issue 43 (docs/ablation.md): the same recipe from scratch and from the packaged ImageNet weights,
EfficientNet-Lite0 against EfficientNetV2-B0, scored on HAM10000's lesion-grouped test split with lesion-bootstrap
95 % intervals (a lesion's images resampled together), beside the runs of docs/training.md and the bundle that
shipped before.

Each row is a predictions CSV in the ISIC submission format (`image` and one probability per class), as
`mnet eval --out DIR` writes it (DIR/predictions.csv); `--bundle NAME=MODEL.onnx` scores a bundle through the
torch-free runtime first and keeps its CSV beside the table; NAME=A.csv+B.csv scores the mean of several runs.
`scripts/ablation.sh` trains and scores the three arms.

    python studies/ablation.py --data ../shared/data/real/ham10000 --out docs/ablation \\
        --run "Lite0, ImageNet=real_out/ablation/lite0_imagenet/eval_test/predictions.csv" \\
        --run "Lite0, scratch=real_out/ablation/lite0_scratch/eval_test/predictions.csv" \\
        --run "V2-B0, scratch=real_out/ablation/v2b0_scratch/eval_test/predictions.csv" \\
        --bundle "V2-B0 shipped before=ham10000_b0.onnx"
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melanomanet.challenge import write_probability_csv  # noqa: E402
from melanomanet.data.ham10000 import read_metadata  # noqa: E402
from melanomanet.data.layouts import prepare_data  # noqa: E402
from melanomanet.metrics import roc_auc  # noqa: E402
from runtime.manifest import CLASS_NAMES  # noqa: E402
from runtime.predictor import Predictor  # noqa: E402
from studies.real_figures import balanced_accuracy, lesion_bootstrap, macro_auc, with_interval  # noqa: E402

MEL = CLASS_NAMES.index("MEL")


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """Image name -> probabilities over CLASS_NAMES (absent columns are 0)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "image" not in rows[0]:
        raise SystemExit(f"{path}: not a predictions CSV (an `image` column and one column per class)")
    return {row["image"]: np.asarray([float(row.get(name) or 0.0) for name in CLASS_NAMES]) for row in rows}


def aligned(path: Path, images: list[str], split_seed: int) -> np.ndarray:
    predicted = read_predictions(path)
    missing = [image for image in images if image not in predicted]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} test images have no prediction (first {missing[0]}); "
                         f"score the split of seed {split_seed} with `mnet eval --split test --out DIR`")
    return np.stack([predicted[image] for image in images])


def bundle_predictions(bundle: Path, images: list[str], files: list[Path], out: Path) -> Path:
    predictor = Predictor(bundle, abcde=False)
    probabilities = []
    for index, path in enumerate(files):
        probabilities.append(predictor.predict(path).probabilities)
        if index % 200 == 0:
            print(f"  {bundle.name}: {index}/{len(files)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    return write_probability_csv(out / f"{bundle.stem}_predictions.csv", images, np.asarray(probabilities),
                                 CLASS_NAMES)


def row_figures(targets: np.ndarray, probabilities: np.ndarray, groups: np.ndarray) -> dict:
    present = np.unique(targets)
    positive = targets == MEL

    def melanoma_auc(idx):
        return roc_auc(positive[idx], probabilities[idx, MEL])

    return {"balanced_accuracy": with_interval(balanced_accuracy(targets, probabilities, present), groups),
            "macro_auc": with_interval(macro_auc(targets, probabilities, present), groups),
            "melanoma_auc": {"value": melanoma_auc(np.arange(len(targets))),
                             "ci95": lesion_bootstrap(melanoma_auc, groups)}}


def markdown(rows: dict[str, dict], images: int, lesions: int) -> str:
    def cell(figure):
        low, high = figure["ci95"]
        return f"{figure['value']:.3f} [{low:.3f}, {high:.3f}]"

    lines = [f"HAM10000's lesion-grouped test split: {images} images of {lesions} lesions; 95 % intervals from 1,000 "
             "lesion-bootstrap resamples.", "",
             "| run | balanced accuracy | macro AUC | melanoma AUC |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {cell(row['balanced_accuracy'])} | {cell(row['macro_auc'])} | {cell(row['melanoma_auc'])} |"
              for name, row in rows.items()]
    return "\n".join(lines) + "\n"


def named_paths(values: list[str], option: str) -> list[tuple[str, list[Path]]]:
    """NAME=FILE, or NAME=FILE+FILE+... for the mean of several runs' probabilities."""
    pairs = []
    for value in values:
        name, _, paths = value.rpartition("=")
        files = [Path(path) for path in paths.split("+")]
        if not name or not all(file.is_file() for file in files):
            raise SystemExit(f"{option} {value!r}: expected NAME=FILE (or FILE+FILE) with existing files")
        pairs.append((name, files))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the HAM10000 folder")
    parser.add_argument("--out", type=Path, default=Path("docs/ablation"))
    parser.add_argument("--run", action="append", default=[], help="NAME=predictions.csv")
    parser.add_argument("--bundle", action="append", default=[], help="NAME=MODEL.onnx, scored through the runtime")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    prepared = prepare_data(args.data, args.split_seed)
    index = prepared.splits["test"]
    images = [prepared.labels.images[i] for i in index]
    targets = prepared.labels.targets[index]
    lesion = {row["image_id"]: row["lesion_id"] for row in read_metadata(args.data)}
    groups = np.asarray([lesion[name] for name in images])
    runs = named_paths(args.run, "--run")
    for name, (bundle,) in named_paths(args.bundle, "--bundle"):
        files = [prepared.image_root[i] for i in images]
        runs.append((name, [bundle_predictions(bundle, images, files, args.out)]))
    rows = {}
    for name, paths in runs:
        probabilities = np.mean([aligned(path, images, args.split_seed) for path in paths], axis=0)
        rows[name] = row_figures(targets, probabilities, groups)
        print(f"{name}: " + ", ".join(f"{key} {value['value']:.3f}" for key, value in rows[name].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    (args.out / "ablation.md").write_text(markdown(rows, len(images), len(np.unique(groups))))
    print(f"wrote {args.out / 'ablation.md'}")


if __name__ == "__main__":
    main()
