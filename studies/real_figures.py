"""The shipped real model's figures (docs/model-card.md, docs/real/): accuracy on HAM10000's lesion-grouped
held-out split with lesion-bootstrap 95 % intervals beside a majority-class and a colour-histogram baseline,
subgroups by sex, age band and body site, calibration before and after, the referral rules, risk-coverage, the
PAD-UFES-20 smartphone photos as out-of-distribution input, and ISIC 2017 as an external set.

Everything runs through the torch-free runtime on the bundle itself (what a user gets), with the split the bundle
records (checked by its sha256). `make real` runs it after training; `--limit N` takes N images per set (tests).

    python studies/real_figures.py --bundle models/ham10000_lite0.onnx --data ../shared/data/real --out docs/real
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from melanomanet.calibration import calibration_figures, risk_coverage, threshold_for_referral_rate
from melanomanet.challenge import official_scores
from melanomanet.data.ham10000 import read_metadata
from melanomanet.data.layouts import prepare_data
from melanomanet.metrics import classification_report, roc_auc
from melanomanet.plots import confusion_png, risk_coverage_png, roc_png, training_curves_png
from runtime.abcde.analyze import analyze
from runtime.abcde.skin import ITA_BANDS
from runtime.domain import NOT_DERMOSCOPY_THRESHOLD, not_dermoscopy_score
from runtime.imageio import load_image
from runtime.predictor import Predictor
from runtime.uncertainty import softmax

RESAMPLES = 1000
SCORES = ("predictive", "epistemic", "aleatoric", "max_probability")
AGE_BANDS = ((0, 30, "<30"), (30, 50, "30-49"), (50, 70, "50-69"), (70, 200, ">=70"))


def predict_all(predictor: Predictor, files: list[Path], label: str) -> dict:
    """Calibrated probabilities, the uncertainty scores, the shipped rule's decision and the not-dermoscopy score
    of every image, through the runtime."""
    rows = {"probabilities": [], "referred": [], "domain": [], **{name: [] for name in SCORES}}
    for index, path in enumerate(files):
        result = predictor.predict(path)
        rows["probabilities"].append(result.probabilities)
        rows["referred"].append(result.referral["flagged"])
        for name in ("predictive", "epistemic", "aleatoric"):
            rows[name].append(getattr(result.uncertainty, name))
        rows["max_probability"].append(1 - result.uncertainty.mean_probabilities.max())
        rows["domain"].append(not_dermoscopy_score(load_image(path)))
        if index % 200 == 0:
            print(f"  {label}: {index}/{len(files)}", file=sys.stderr)
    return {key: np.asarray(value) for key, value in rows.items()}


def skin_bands(files: list[Path], label: str) -> list[str]:
    """Each image's ITA band of the skin around the runtime's own outline (`abcde.skin`), "unmeasured" where no
    outline was measured or too little skin is in view."""
    bands = []
    for index, path in enumerate(files):
        skin = analyze(load_image(path)).get("skin")
        bands.append(skin["band"] if skin else "unmeasured")
        if index % 400 == 0:
            print(f"  {label} skin: {index}/{len(files)}", file=sys.stderr)
    return bands


def lesion_bootstrap(statistic, groups: np.ndarray, seed: int = 0, resamples: int = RESAMPLES) -> list[float]:
    """95 % interval of `statistic(indices)` over resamples of whole lesions (a lesion's images together)."""
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(names))]
    values = []
    for _ in range(resamples):
        chosen = rng.integers(0, len(names), len(names))
        value = statistic(np.concatenate([members[k] for k in chosen]))
        if value is not None and np.isfinite(value):
            values.append(value)
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else [None, None]


def with_interval(statistic, groups: np.ndarray) -> dict:
    return {"value": statistic(np.arange(len(groups))), "ci95": lesion_bootstrap(statistic, groups)}


def balanced_accuracy(targets, probabilities, present):
    def statistic(idx):
        predicted = probabilities[idx].argmax(axis=1)
        recalls = [np.mean(predicted[targets[idx] == k] == k) for k in present if np.any(targets[idx] == k)]
        return float(np.mean(recalls))
    return statistic


def macro_auc(targets, probabilities, present):
    def statistic(idx):
        aucs = [roc_auc(targets[idx] == k, probabilities[idx, k]) for k in present]
        return None if None in aucs else float(np.mean(aucs))
    return statistic


DOMAIN_CROSS_VALIDATED_AUROC = 0.971  # studies/domain_check.py, printed by it


def sensitivity_at(positive, decided):
    return lambda idx: float(decided[idx][positive[idx]].mean()) if positive[idx].any() else None


def specificity_at(positive, decided):
    return lambda idx: float((~decided[idx])[~positive[idx]].mean()) if (~positive[idx]).any() else None


def accuracy_figures(targets, probabilities, groups, names, mel_threshold) -> dict:
    present = np.unique(targets)
    report = classification_report(targets, probabilities, tuple(names))
    figures = {"images": int(len(targets)), "lesions": int(len(np.unique(groups))),
               "balanced_accuracy": with_interval(balanced_accuracy(targets, probabilities, present), groups),
               "macro_auc": with_interval(macro_auc(targets, probabilities, present), groups),
               "accuracy": report["accuracy"], "confusion_matrix": report["confusion_matrix"], "per_class": {}}
    predicted = probabilities.argmax(axis=1)
    for k in present:
        positive, decided = targets == k, predicted == k
        figures["per_class"][names[k]] = {
            "support": int(positive.sum()),
            "sensitivity": with_interval(sensitivity_at(positive, decided), groups),
            "specificity": with_interval(specificity_at(positive, decided), groups),
            "auc": report["per_class"][names[k]]["auc"]}
    if mel_threshold is not None:
        positive = targets == names.index("MEL")
        decided = probabilities[:, names.index("MEL")] >= mel_threshold
        figures["melanoma_at_threshold"] = {
            "threshold": mel_threshold, "sensitivity": with_interval(sensitivity_at(positive, decided), groups),
            "specificity": with_interval(specificity_at(positive, decided), groups)}
    return figures


def colour_histograms(files: list[Path], bins: int = 8) -> np.ndarray:
    """A joint HSV histogram (8 x 8 x 8, normalised) per image: the simple baseline's features."""
    rows = []
    for path in files:
        hsv = cv2.cvtColor(load_image(path), cv2.COLOR_RGB2HSV)
        histogram = cv2.calcHist([hsv], [0, 1, 2], None, [bins] * 3, [0, 180, 0, 256, 0, 256]).ravel()
        rows.append(histogram / histogram.sum())
    return np.sqrt(np.asarray(rows))


def histogram_baseline(train_files, train_targets, test_files, classes: int) -> np.ndarray:
    """Class-balanced logistic regression on colour histograms, trained on the training split."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)
    model.fit(colour_histograms(train_files), train_targets)
    probabilities = np.zeros((len(test_files), classes))
    probabilities[:, model.classes_] = model.predict_proba(colour_histograms(test_files))
    return probabilities


def subgroups(metadata: dict, images, targets, probabilities, groups, names, mel_threshold) -> dict:
    """Balanced accuracy, and melanoma sensitivity and specificity at the threshold, by sex, age band and body site
    (HAM10000's metadata) and by the ITA band of the skin around the lesion (`ita_band`, measured here)."""
    def band(age: str) -> str:
        if not age:
            return "unknown"
        return next(label for low, high, label in AGE_BANDS if low <= float(age) < high)

    keys = {"sex": lambda row: row["sex"] or "unknown", "age_band": lambda row: band(row["age"]),
            "body_site": lambda row: row["localization"] or "unknown",
            "skin_ita_band": lambda row: row.get("ita_band", "unmeasured")}
    present = np.unique(targets)
    melanoma = targets == names.index("MEL")
    flagged = probabilities[:, names.index("MEL")] >= (mel_threshold if mel_threshold is not None else 0.5)
    table = {}
    for key, value_of in keys.items():
        values = np.asarray([value_of(metadata[name]) for name in images])
        table[key] = {}
        for value in sorted(set(values)):
            idx = np.flatnonzero(values == value)
            statistic = balanced_accuracy(targets[idx], probabilities[idx], present)
            table[key][value] = {
                "images": int(len(idx)), "melanomas": int(melanoma[idx].sum()),
                "balanced_accuracy": with_interval(statistic, groups[idx]),
                "melanoma_sensitivity": with_interval(sensitivity_at(melanoma[idx], flagged[idx]), groups[idx])
                if melanoma[idx].any() else None,
                "melanoma_specificity": with_interval(specificity_at(melanoma[idx], flagged[idx]), groups[idx])
                if (~melanoma[idx]).any() else None}
    return table


def uncalibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z) from softmax(z / T): log p = z / T - c."""
    return softmax(np.log(np.clip(probabilities, 1e-30, None)) * temperature)


def referral_figures(val, test, val_targets, test_targets, names) -> dict:
    """The shipped rule, and a 20 % referral rate by predictive entropy chosen on validation, on the test split."""
    melanoma = test_targets == names.index("MEL")
    correct = test["probabilities"].argmax(axis=1) == test_targets
    shipped = test["referred"]
    threshold = threshold_for_referral_rate(val["predictive"], 0.2)
    rate_rule = test["predictive"] > threshold
    rows = {}
    for label, referred in (("shipped rule", shipped), ("20 % referral rate (predictive entropy)", rate_rule)):
        rows[label] = {"referred": float(referred.mean()),
                       "melanomas_referred": float(referred[melanoma].mean()) if melanoma.any() else None,
                       "others_kept": float((~referred)[~melanoma].mean()) if (~melanoma).any() else None,
                       "accuracy_kept": float(correct[~referred].mean()) if (~referred).any() else None,
                       "accuracy_all": float(correct.mean())}
    rows["20 % referral rate (predictive entropy)"]["threshold"] = float(threshold)
    return rows


def ood_figures(test, outside) -> dict:
    separation = {}
    for name in (*SCORES, "domain"):
        truth = np.r_[np.zeros(len(test[name])), np.ones(len(outside[name]))]
        separation[name] = roc_auc(truth.astype(bool), np.r_[test[name], outside[name]])
    return {"photos": int(len(outside["referred"])), "auroc": separation,
            "referred_by_shipped_rule": float(outside["referred"].mean()),
            "dermoscopy_referred_by_shipped_rule": float(test["referred"].mean())}


def photo_strata(folder: Path, photos: list[Path], outside: dict, bands: list[str]) -> dict:
    """The phone photos by PAD-UFES-20's recorded Fitzpatrick type and by ITA band: counts, and the share the
    shipped rule refers and the domain check flags."""
    import csv

    with open(folder / "metadata.csv", newline="") as handle:
        fitzpatrick = {row["img_id"]: row["fitspatrick"] for row in csv.DictReader(handle)}
    types = [f"type {int(float(fitzpatrick[p.name]))}" if fitzpatrick.get(p.name) else "not recorded" for p in photos]
    flagged = outside["domain"] > NOT_DERMOSCOPY_THRESHOLD
    table = {}
    for key, values in (("fitzpatrick", types), ("skin_ita_band", bands)):
        values = np.asarray(values)
        table[key] = {value: {"photos": int((values == value).sum()),
                              "referred": float(outside["referred"][values == value].mean()),
                              "flagged_not_dermoscopy": float(flagged[values == value].mean())}
                      for value in sorted(set(values))}
    return table


def take(indices: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    if limit is None or limit >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))


def run(bundle: Path, data: Path, out: Path, limit: int | None, history: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(bundle, abcde=False)
    manifest = predictor.manifest
    names = list(manifest.class_names)
    recorded = manifest.extra.get("data")
    if not recorded:
        raise SystemExit(f"{bundle}: its manifest records no training data split (extra.data); export it from a "
                         "checkpoint that `mnet train` wrote")
    prepared = prepare_data(data / "ham10000", recorded["split"]["seed"], layout=recorded["layout"])
    ours = prepared.record(recorded["split"]["seed"])["split"]["parts"]
    for part in ("val", "test"):
        if ours[part]["sha256"] != recorded["split"]["parts"][part]["sha256"]:
            raise SystemExit(f"{data / 'ham10000'}: the {part} split differs from the one {bundle} records; "
                             "these figures would not be held out")
    metadata = {row["image_id"]: row for row in read_metadata(data / "ham10000")}
    rule = manifest.referral_rule
    mel_threshold = rule.threshold if rule.score == "class_probability" and rule.class_name == "MEL" else None

    def part(name):
        idx = take(prepared.splits[name], limit)
        images = [prepared.labels.images[i] for i in idx]
        return images, [prepared.image_root[i] for i in images], prepared.labels.targets[idx]

    val_images, val_files, val_targets = part("val")
    test_images, test_files, test_targets = part("test")
    groups = np.asarray([metadata[name]["lesion_id"] for name in test_images])
    val = predict_all(predictor, val_files, "validation")
    test = predict_all(predictor, test_files, "test")
    figures = {"bundle": bundle.name, "bundle_sha256": predictor.model_info["sha256"],
               "model": f"{manifest.architecture}, {manifest.preprocessing.image_size} px",
               "temperature": manifest.temperature, "referral_rule": rule.to_dict(),
               "data": prepared.describe(), "limit": limit}
    figures["test"] = accuracy_figures(test_targets, test["probabilities"], groups, names, mel_threshold)
    official = official_scores(test_images, test_targets, test["probabilities"], names)
    figures["test"]["isic_official"] = official
    majority = np.zeros_like(test["probabilities"])
    majority[:, np.bincount(prepared.labels.targets[prepared.splits["train"]]).argmax()] = 1
    train_idx = take(prepared.splits["train"], None if limit is None else 4 * limit)
    baseline = histogram_baseline([prepared.image_root[prepared.labels.images[i]] for i in train_idx],
                                  prepared.labels.targets[train_idx], test_files, len(names))
    figures["baselines"] = {
        "majority_class": accuracy_figures(test_targets, majority, groups, names, None),
        "colour_histogram_logistic_regression": accuracy_figures(test_targets, baseline, groups, names, None)}
    for name, skin in zip(test_images, skin_bands(test_files, "test")):
        metadata[name] = {**metadata[name], "ita_band": skin}
    figures["subgroups"] = subgroups(metadata, test_images, test_targets, test["probabilities"], groups, names,
                                     mel_threshold)
    figures["calibration"] = {
        "before": calibration_figures(uncalibrated(test["probabilities"], manifest.temperature), test_targets),
        "after": calibration_figures(test["probabilities"], test_targets)}
    figures["referral"] = referral_figures(val, test, val_targets, test_targets, names)
    curves = risk_coverage({name: test[name] for name in SCORES}, test["probabilities"].argmax(axis=1),
                           test_targets)
    figures["risk_coverage"] = curves
    photos = sorted(p for p in (data / "pad-ufes-20" / "images").iterdir())
    outside = predict_all(predictor, photos[:limit] if limit else photos, "PAD-UFES-20")
    figures["out_of_distribution"] = ood_figures(test, outside)
    photos = photos[:limit] if limit else photos
    figures["out_of_distribution"]["by_skin"] = photo_strata(data / "pad-ufes-20", photos, outside,
                                                             skin_bands(photos, "PAD-UFES-20"))
    external = prepare_data(data / "isic2017", 0)
    idx = take(np.arange(len(external.labels.images)), limit)
    external_targets = external.labels.targets[idx]
    external_probabilities = predict_all(predictor, [external.image_root[external.labels.images[i]] for i in idx],
                                         "ISIC 2017")["probabilities"]
    figures["external_isic2017"] = accuracy_figures(
        external_targets, external_probabilities, np.asarray([external.labels.images[i] for i in idx]), names,
        mel_threshold)
    title = f"HAM10000 held-out split, {len(test_targets)} images"
    confusion_png(np.asarray(figures["test"]["confusion_matrix"]), names, out / "confusion.png", title)
    roc_png(test_targets, test["probabilities"], names,
            {name: row["auc"] for name, row in figures["test"]["per_class"].items()}, out / "roc.png", title)
    risk_coverage_png(curves, out / "risk_coverage.png", title)
    if history is not None and history.is_file():
        figures["training_curves"] = json.loads(history.read_text())
        training_curves_png(figures["training_curves"], out / "training_curves.png")
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=float))
    (out / "figures.md").write_text(markdown(figures))
    return figures


def number(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def interval(figure: dict) -> str:
    low, high = figure["ci95"]
    return f"{figure['value']:.3f} ({low:.3f}-{high:.3f})" if low is not None else f"{figure['value']:.3f}"


def summary(figures: dict) -> str:
    test = figures["test"]
    lines = [f"held-out split: {test['images']} images of {test['lesions']} lesions",
             f"balanced accuracy {interval(test['balanced_accuracy'])}, macro AUC {interval(test['macro_auc'])}"]
    for name, row in figures["baselines"].items():
        lines.append(f"  baseline {name}: balanced accuracy {interval(row['balanced_accuracy'])}, "
                     f"macro AUC {interval(row['macro_auc'])}")
    for name, row in test["per_class"].items():
        lines.append(f"  {name} (n={row['support']}): sensitivity {interval(row['sensitivity'])}, "
                     f"specificity {interval(row['specificity'])}, AUC {row['auc']:.3f}")
    if "melanoma_at_threshold" in test:
        row = test["melanoma_at_threshold"]
        lines.append(f"melanoma at p(MEL) >= {row['threshold']:.3f}: sensitivity {interval(row['sensitivity'])}, "
                     f"specificity {interval(row['specificity'])}")
    for name in ("before", "after"):
        row = figures["calibration"][name]
        lines.append(f"calibration {name}: ECE {row['ece']:.4f}, MCE {row['mce']:.4f}, NLL {row['nll']:.4f}, "
                     f"Brier {row['brier']:.4f}")
    for name, row in figures["referral"].items():
        lines.append(f"{name}: referred {number(row['referred'])}, melanomas referred "
                     f"{number(row['melanomas_referred'])}, accuracy kept {number(row['accuracy_kept'])} "
                     f"(all {number(row['accuracy_all'])})")
    ood = figures["out_of_distribution"]
    lines.append(f"PAD-UFES-20 ({ood['photos']} phone photos) vs held-out dermoscopy, AUROC: " + ", ".join(
        f"{name} {number(value)}" for name, value in ood["auroc"].items())
        + f"; shipped rule refers {ood['referred_by_shipped_rule']:.3f} of the photos "
          f"({ood['dermoscopy_referred_by_shipped_rule']:.3f} of the dermoscopy)")
    external = figures["external_isic2017"]
    lines.append(f"ISIC 2017 (external, {external['images']} images): balanced accuracy "
                 f"{interval(external['balanced_accuracy'])}, MEL AUC {number(external['per_class']['MEL']['auc'])}")
    return "\n".join(lines)


def markdown(figures: dict) -> str:
    """docs/real/figures.md: every figure as a table, written by the run that measured it."""
    def cell(figure):
        return interval(figure) if isinstance(figure, dict) else number(figure)

    test = figures["test"]
    rule = figures["referral_rule"]
    out = [f"# Figures of `{figures['bundle']}` (sha256 {figures['bundle_sha256'][:16]}...)", "",
           "Written by `studies/real_figures.py` (`make real`); 95 % intervals from 1,000 bootstrap resamples of "
           "whole lesions. Research use only: not validated for diagnosis.", "",
           "```", figures["data"], "```", "",
           f"## Held-out split: {test['images']} images of {test['lesions']} lesions", "",
           "| model | balanced accuracy | macro AUC | accuracy |", "| --- | --- | --- | --- |",
           f"| {figures['model']} (shipped) | {cell(test['balanced_accuracy'])} | {cell(test['macro_auc'])} "
           f"| {test['accuracy']:.3f} |"]
    for name, row in figures["baselines"].items():
        out.append(f"| baseline: {name.replace('_', ' ')} | {cell(row['balanced_accuracy'])} | "
                   f"{cell(row['macro_auc'])} | {row['accuracy']:.3f} |")
    official = test.get("isic_official")
    if official:
        out += ["", "Official ISIC scorer: balanced multiclass accuracy "
                    f"{official['balanced_multiclass_accuracy']:.4f}, macro AUC {official['macro_auc']:.4f}."]
    out += ["", "| class | images | sensitivity | specificity | AUC |", "| --- | --- | --- | --- | --- |"]
    for name, row in test["per_class"].items():
        out.append(f"| {name} | {row['support']} | {cell(row['sensitivity'])} | {cell(row['specificity'])} | "
                   f"{cell(row['auc'])} |")
    if "melanoma_at_threshold" in test:
        row = test["melanoma_at_threshold"]
        out += ["", f"Melanoma at the bundle's threshold p(MEL) >= {row['threshold']:.4f} ({rule['chosen_by']}): "
                    f"sensitivity {cell(row['sensitivity'])}, specificity {cell(row['specificity'])}."]
    out += ["", "![confusion](confusion.png) ![roc](roc.png)", "", "## Subgroups (HAM10000 metadata)", "",
            "| group | value | images | melanomas | balanced accuracy | melanoma sensitivity at the threshold | "
            "melanoma specificity at the threshold |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, rows in figures["subgroups"].items():
        for value, row in rows.items():
            out.append(f"| {key.replace('_', ' ')} | {value} | {row['images']} | {row['melanomas']} | "
                       f"{cell(row['balanced_accuracy'])} | {cell(row['melanoma_sensitivity'])} | "
                       f"{cell(row.get('melanoma_specificity'))} |")
    out += ["", "Skin ITA band: the Individual Typology Angle of a ring of skin around the runtime's outline, "
                f"bands {', '.join(f'{name} > {low:g}' for low, name in ITA_BANDS)} degrees, dark below; measured "
                "under the dermatoscope's own light, an approximation of skin tone (HAM10000 records no skin type). "
                "A band with few images has not been measured, whatever its figure."]
    out += ["", f"## Calibration (temperature {figures['temperature']:.3f}, fitted on the validation split)", "",
            "| | ECE | MCE | NLL | Brier |", "| --- | --- | --- | --- | --- |"]
    for name in ("before", "after"):
        row = figures["calibration"][name]
        out.append(f"| {name} | {row['ece']:.4f} | {row['mce']:.4f} | {row['nll']:.4f} | {row['brier']:.4f} |")
    out += ["", "## Referral on the held-out split", "",
            "| rule | referred | melanomas referred (sensitivity) | other lesions kept (specificity) | accuracy of "
            "the kept | accuracy of all |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in figures["referral"].items():
        out.append(f"| {name} | {row['referred']:.3f} | {cell(row['melanomas_referred'])} | "
                   f"{cell(row.get('others_kept'))} | {cell(row['accuracy_kept'])} | {row['accuracy_all']:.3f} |")
    out += ["", "Risk-coverage (balanced accuracy of the kept images as the most uncertain are referred):", "",
            "| score | AURC | 0 % | 10 % | 20 % | 30 % |", "| --- | --- | --- | --- | --- | --- |"]
    for name, curve in figures["risk_coverage"].items():
        by_rate = {round(row["referral_rate"], 2): row["balanced_accuracy"] for row in curve["rows"]}
        out.append(f"| {name} | {curve['aurc']:.3f} | " + " | ".join(
            cell(by_rate.get(rate)) for rate in (0.0, 0.1, 0.2, 0.3)) + " |")
    ood = figures["out_of_distribution"]
    out += ["", "![risk-coverage](risk_coverage.png)", "",
            f"## Out of distribution: {ood['photos']} PAD-UFES-20 smartphone photos against the held-out dermoscopy",
            "", "| score | AUROC |", "| --- | --- |"]
    out += [f"| {name} | {cell(value)} |" if name != "domain" else
            f"| domain (in-sample: the check was fitted on these {ood['photos']} photos; out of sample, five-fold "
            f"cross-validated, {DOMAIN_CROSS_VALIDATED_AUROC}: studies/domain_check.py) | {cell(value)} |"
            for name, value in ood["auroc"].items()]
    out += ["", f"The shipped rule refers {ood['referred_by_shipped_rule']:.3f} of the photos and "
                f"{ood['dermoscopy_referred_by_shipped_rule']:.3f} of the held-out dermoscopy.", ""]
    if ood.get("by_skin"):
        out += ["The photos by PAD-UFES-20's recorded Fitzpatrick type and by ITA band:", "",
                "| stratum | value | photos | referred | flagged as not dermoscopy |",
                "| --- | --- | --- | --- | --- |"]
        for key, rows in ood["by_skin"].items():
            out += [f"| {key.replace('_', ' ')} | {value} | {row['photos']} | {row['referred']:.3f} | "
                    f"{row['flagged_not_dermoscopy']:.3f} |" for value, row in rows.items()]
        out.append("")
    external = figures["external_isic2017"]
    out += [f"## External: ISIC 2017 Part 1 ({external['images']} images, MEL and NV)", "",
            f"Balanced accuracy {cell(external['balanced_accuracy'])}, macro AUC {cell(external['macro_auc'])}; "
            f"MEL AUC {cell(external['per_class']['MEL']['auc'])}"
            + (f"; melanoma at the bundle's threshold: sensitivity "
               f"{cell(external['melanoma_at_threshold']['sensitivity'])}, specificity "
               f"{cell(external['melanoma_at_threshold']['specificity'])}" if "melanoma_at_threshold" in external
               else "") + ".", ""]
    if figures.get("training_curves"):
        out += ["## Training", "", "![training curves](training_curves.png)", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/ham10000_lite0.onnx"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/real"))
    parser.add_argument("--out", type=Path, default=Path("docs/real"))
    parser.add_argument("--history", type=Path, default=None, help="history.json of the training run")
    parser.add_argument("--limit", type=int, default=None, help="images per set (a quick check)")
    arguments = parser.parse_args()
    figures = run(arguments.bundle, arguments.data, arguments.out, arguments.limit, arguments.history)
    print(summary(figures))


if __name__ == "__main__":
    main()
