"""ABCD on real dermoscopy against experts: the lesion outline against expert masks per set and per diagnosis
(median and mean Jaccard with a bootstrap 95 % interval, thresholded Jaccard as ISIC 2018 scores it, outlines
withheld, outlines measured with Jaccard < 0.5), the outline quality check's precision and recall against
Jaccard < 0.5, and on PH2 the asymmetry score, colours and structures against its dermatologists
(cross-validated inside the set, nested: `melanomanet/abcd_rules.py`).

A withheld outline counts as Jaccard 0 in the median, mean and thresholded figures: the user gets no outline.

The PAD-UFES-20 photos the shipped segmenter was fine-tuned on are measured out of fold: with `--segmenter-folds`,
each is segmented by the cross-validation model of `mnet train-segmenter --clinical` that never saw its patient.

Reproduces the "Real dermoscopy" tables of docs/abcde.md (`make abcd` retrains and refits first):
`python -m studies.abcd_agreement ../shared/data/real/ph2 ../shared/data/real/isic2017 ../shared/data/real/pad-ufes-20
--segmenter-folds build/segmenter-folds --json docs/abcde/agreement.json` (about 3 CPU minutes on 2 cores; a
HAM10000 folder is read too)."""

from __future__ import annotations

import csv
import json
from multiprocessing import Pool
from pathlib import Path
from typing import Annotated, Optional

import cv2
import numpy as np
import typer

from melanomanet.data.ham10000 import is_ham10000, read_metadata
from melanomanet.data.isic2017 import is_isic2017, mask_files, read_isic2017
from melanomanet.data.labels import image_files
from melanomanet.data.pad_ufes import is_pad_ufes
from melanomanet.data.ph2 import COLOURS, image_and_mask_files, is_ph2, read_annotations
from runtime.errors import DatasetError
from runtime.manifest import CLASS_NAMES

BAD, THRESHOLD = 0.5, 0.65
PER_IMAGE_UP_TO = 1000  # sets larger than this keep only their summaries in the JSON
TARGETS = {"median": 0.88, "mean": 0.82, "thresholded": 0.78, "withheld": 0.05, "measured_below_half": 0.02,
           "ph2_melanoma_median": 0.80, "asymmetry_kappa": 0.5, "asymmetry_exact": 0.65, "colour_kappa": 0.4,
           "colour_count_correlation": 0.6, "pad_ufes_median": 0.75}


def cases(root: Path) -> tuple[str, list[tuple[str, Path, Path, str]]]:
    """The set's name and its (name, image, expert mask, diagnosis) for every image with a mask."""
    root = Path(root)
    if is_ph2(root):
        images, masks = image_and_mask_files(root)
        return "PH2", [(row["image"], images[row["image"]], masks[row["image"]], row["diagnosis"])
                       for row in read_annotations(root) if row["image"] in images and row["image"] in masks]
    if is_isic2017(root):
        release, masks = read_isic2017(root), mask_files(root)
        labels = dict(zip(release.labels.images, release.labels.targets))
        return "ISIC 2017", [(name, release.files[name], masks[name], CLASS_NAMES[labels[name]])
                             for name in sorted(labels) if name in release.files and name in masks]
    if is_ham10000(root):
        images = image_files(root / "images")
        masks = {p.stem.removesuffix("_segmentation"): p for p in image_files(root / "masks").values()}
        return "HAM10000", [(row["image_id"], images[row["image_id"]], masks[row["image_id"]], row["dx"])
                            for row in read_metadata(root) if row["image_id"] in images and row["image_id"] in masks]
    if is_pad_ufes(root):
        images = image_files(root / "images")
        masks = {p.stem.removesuffix("_mask"): p for p in image_files(root / "masks").values()}
        with open(root / "metadata.csv", newline="") as handle:
            named = [(Path(row["img_id"]).stem, row["diagnostic"]) for row in csv.DictReader(handle)]
        return "PAD-UFES-20", [(name, images[name], masks[name], diagnosis) for name, diagnosis in named
                               if name in images and name in masks]
    raise DatasetError(f"{root}: not a PH2, ISIC 2017, HAM10000 or PAD-UFES-20 folder with lesion masks")


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.count_nonzero(first & second) / max(np.count_nonzero(first | second), 1))


def score(case: tuple[str, Path, Path, str], segmenter: Path | None = None) -> dict:
    """The shown outline's Jaccard (0 when withheld), and the Jaccard of the outline the check judged; with
    `segmenter` (a cross-validation fold's model) as the clinical segmenter instead of the shipped one."""
    from runtime.abcde.segmenter import using_model

    if segmenter is None:
        return outline_scores(case) | {"clinical_segmenter": "shipped"}
    with using_model(segmenter, "clinical"):
        return outline_scores(case) | {"clinical_segmenter": segmenter.stem}


def outline_scores(case: tuple[str, Path, Path, str]) -> dict:
    from runtime.abcde.analyze import analyze_with_mask, bounded_view
    from runtime.abcde.segment import segment
    from runtime.imageio import load_image

    name, image, mask, diagnosis = case
    rgb = load_image(image)
    truth = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    truth = cv2.resize(truth, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 127
    analysis = analyze_with_mask(rgb)
    status = analysis.measurements["status"]
    if analysis.mask is not None:
        judged = analysis.mask > 0
    else:
        view, _ = bounded_view(rgb)
        judged = cv2.resize(segment(view).mask, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    judged_jaccard = jaccard(judged, truth)
    return {"image": name, "diagnosis": diagnosis, "status": status, "judged_jaccard": judged_jaccard,
            "jaccard": judged_jaccard if status == "measured" else 0.0,
            "border_share": analysis.measurements["segmentation"].get("border_share"),
            "segmenter": analysis.measurements["segmentation"].get("segmenter")}


def interval(values: np.ndarray, seed: int = 0, draws: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (draws, len(values))).mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarise(scored: list[dict]) -> dict:
    shown = np.array([s["jaccard"] for s in scored])
    judged = np.array([s["judged_jaccard"] for s in scored])
    measured = np.array([s["status"] == "measured" for s in scored])
    withheld = ~measured
    bad = judged < BAD
    return {"images": len(scored), "median": float(np.median(shown)), "mean": float(shown.mean()),
            "mean_95ci": interval(shown), "thresholded": float(np.where(shown < THRESHOLD, 0, shown).mean()),
            "withheld": int(withheld.sum()), "withheld_share": float(withheld.mean()),
            "measured_below_half": int((measured & bad).sum()),
            "measured_below_half_share": float((measured & bad).mean()),
            "check_precision": float(bad[withheld].mean()) if withheld.any() else None,
            "check_recall": float(withheld[bad].mean()) if bad.any() else None}


def held_out_models(folds: Path | None) -> dict[str, Path]:
    """Image name -> the cross-validation model that was not fine-tuned on it (`mnet train-segmenter --clinical`)."""
    if folds is None:
        return {}
    models = {name: model for model in sorted(Path(folds).glob("fold*.onnx"))
              for name in json.loads(model.with_suffix(".json").read_text())["held_out"]}
    if not models:
        raise DatasetError(f"{folds}: no fold<k>.onnx with its record; run mnet train-segmenter --clinical first")
    return models


def segmentation(roots: list[Path], limit: int | None, workers: int, folds: Path | None = None) -> dict:
    """Per set: the summary, per diagnosis, and per image. Images a fold model held out are segmented by it."""
    models = held_out_models(folds)
    results = {}
    for root in roots:
        name, found = cases(root)
        if limit:
            found = found[:: max(1, len(found) // limit)][:limit]
        with Pool(workers) as pool:
            scored = pool.starmap(score, [(case, models.get(case[0])) for case in found], chunksize=4)
        diagnoses = sorted({s["diagnosis"] for s in scored})
        results[name] = {"all": summarise(scored),
                         "by_diagnosis": {d: summarise([s for s in scored if s["diagnosis"] == d]) for d in diagnoses},
                         "images": scored}
    return results


def dermatologist_agreement(ph2: Path, repeats: int) -> dict:
    """A, the colours and the structures against PH2's annotations, out of fold."""
    from melanomanet.abcd_rules import agreement, cross_validated, design, ph2_records
    from runtime.abcde.rules import TARGET_KINDS

    records = ph2_records(ph2)
    measured = [r for r in records if r["features"] is not None]
    _, features = design(measured)
    table, colour_runs = {}, {}
    for target, kind in TARGET_KINDS.items():
        labels = np.array([r["targets"][target] for r in measured])
        runs = cross_validated(features, labels, kind, repeats)
        table[target] = agreement(labels, runs, kind)
        if target in COLOURS:
            colour_runs[target] = runs
    truth_count = np.array([sum(r["targets"][c] for c in COLOURS) for r in measured])
    correlations = [float(np.corrcoef(truth_count, sum(colour_runs[c][i] for c in COLOURS))[0, 1])
                    for i in range(repeats)]
    return {"images": len(records), "measured": len(measured), "targets": table,
            "colour_count_correlation": float(np.mean(correlations))}


def print_tables(results: dict, agreement: dict | None) -> None:
    print(f"{'set / diagnosis':28s} {'n':>5s} {'median':>7s} {'mean (95% CI)':>20s} {'thresh':>7s} "
          f"{'withheld':>9s} {'J<0.5':>7s} {'check P/R':>10s}")
    for name, result in results.items():
        for label, row in [(name, result["all"]), *((f"  {d}", r) for d, r in result["by_diagnosis"].items())]:
            low, high = row["mean_95ci"]
            check = "/".join("-" if v is None else f"{v:.2f}" for v in (row["check_precision"], row["check_recall"]))
            print(f"{label:28s} {row['images']:5d} {row['median']:7.3f} {row['mean']:7.3f} ({low:.3f}-{high:.3f}) "
                  f"{row['thresholded']:7.3f} {row['withheld']:4d} {row['withheld_share']:4.0%} "
                  f"{row['measured_below_half']:3d} {row['measured_below_half_share']:3.0%} {check:>10s}")
    if agreement is None:
        return
    print(f"\nPH2 dermatologists ({agreement['measured']} of {agreement['images']} measured; cross-validated)")
    for target, row in agreement["targets"].items():
        print(f"  {target:20s} kappa {row['kappa']:5.2f} +- {row['kappa_sd']:.2f} ({row['weights']} weights)  "
              f"exact {row['exact']:.2f}  positives {row['positives']}")
    print(f"  colour count correlation {agreement['colour_count_correlation']:.2f}")


def main(data: Annotated[list[Path], typer.Argument(help="PH2, ISIC 2017, HAM10000 or PAD-UFES-20 folders.")],
         limit: Annotated[Optional[int], typer.Option(help="At most this many images per set (evenly spaced).")] = None,
         workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 2,
         repeats: Annotated[int, typer.Option(min=1, help="Repeats of the 5-fold cross-validation.")] = 5,
         json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write every figure here.")] = None,
         segmenter_folds: Annotated[Optional[Path], typer.Option(
             help="The cross-validation models of mnet train-segmenter --clinical: each photo the shipped model was "
                  "fine-tuned on is segmented by the fold model that never saw it.")] = None):
    results = segmentation(data, limit, workers, segmenter_folds)
    ph2 = next((root for root in data if is_ph2(Path(root))), None)
    agreement = dermatologist_agreement(ph2, repeats) if ph2 is not None else None
    print_tables(results, agreement)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        kept = {name: {key: value for key, value in result.items() if key != "images" or len(value) <= PER_IMAGE_UP_TO}
                for name, result in results.items()}
        json_out.write_text(json.dumps({"targets": TARGETS, "segmentation": kept, "dermatologists": agreement},
                                       indent=1))


if __name__ == "__main__":
    typer.run(main)
