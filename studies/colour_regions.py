"""Would other colour numbers decide dark brown and white as PH2's dermatologists do? Beside the shipped features
(`runtime/abcde/features.py`: CIELAB percentiles, colour shares and histograms relative to the skin), this measures
on the same outline the lesion's lightness split in two by Otsu (gap, darker share, each half against the skin),
three k-means colours (lightness against the skin, share, b*, chroma), the largest connected dark-brown, light-brown
and whitish regions, and how much darker than its neighbourhood the lesion gets. Each set is scored cross-validated
as `abcd_agreement.py` does (the shipped nested rule), and with the k features that separate best chosen inside each
training fold.

Reproduces the dark brown and white figures of "Against PH2's dermatologists" in docs/abcde.md:
`python -m studies.colour_regions ../shared/data/real/ph2` (about half a CPU minute on 2 cores)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from melanomanet.abcd_rules import REPEATS, cross_validated, kappa

TARGETS = ("dark_brown", "white")
SELECTED = (3, 5, 15)


def measured(image_rgb: np.ndarray) -> tuple[dict[str, float], tuple] | None:
    """The shipped features of the runtime's outline and the view they were measured on (`feature_view`: inpainted
    CIELAB, gray, mask, hairs, geometry); None when the outline is withheld."""
    from runtime.abcde.analyze import bounded_view
    from runtime.abcde.features import feature_view, lesion_features
    from runtime.abcde.segment import segment

    view, _ = bounded_view(image_rgb)
    found = segment(view)
    if not (found.found and found.quality.reliable):
        return None
    measured_view = feature_view(view, found.mask, found)
    return lesion_features(*measured_view), measured_view


def largest_region_share(where: np.ndarray, area: int) -> float:
    count, _, stats, _ = cv2.connectedComponentsWithStats(where.astype(np.uint8))
    return float(stats[1:, cv2.CC_STAT_AREA].max() / area) if count > 1 else 0.0


def region_features(lab: np.ndarray, mask: np.ndarray, hairs: np.ndarray) -> dict[str, float]:
    from runtime.abcde.features import skin_colour
    from runtime.abcde.segment import otsu_level

    lesion = mask.astype(bool) & ~hairs.astype(bool)
    skin = skin_colour(lab, mask)
    skin_chroma = float(np.hypot(skin[1], skin[2]))
    lightness, b = lab[lesion][:, 0], lab[lesion][:, 2]
    low, high = float(lightness.min()), float(lightness.max()) + 1e-3
    level = low + (otsu_level(np.histogram(lightness, 256, (low, high))[0].astype(float)) + 0.5) / 256 * (high - low)
    darker, lighter = lightness <= level, lightness > level
    halves = darker.any() and lighter.any()
    gap = float(lightness[lighter].mean() - lightness[darker].mean()) if halves else 0.0
    features = {"otsu_gap": gap, "otsu_dark_share": float(darker.mean()),
                "otsu_dark_vs_skin": float(lightness[darker].mean() - skin[0]) if darker.any() else 0.0,
                "otsu_light_vs_skin": float(lightness[lighter].mean() - skin[0]) if lighter.any() else 0.0,
                "otsu_dark_b": float(b[darker].mean()) if darker.any() else 0.0,
                "otsu_separation": float(darker.mean() * lighter.mean() * gap**2 / (lightness.var() + 1e-6))}
    pixels = lab[lesion]
    sample = np.ascontiguousarray(pixels[:: max(1, len(pixels) // 4000)], np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(sample, 3, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    order = np.argsort(centres[:, 0])
    shares = np.bincount(labels.ravel(), minlength=3)[order] / len(sample)
    for name, centre, share in zip(("dark", "mid", "light"), centres[order], shares):
        features.update({f"kmeans_{name}_vs_skin": float(centre[0] - skin[0]), f"kmeans_{name}_share": float(share),
                         f"kmeans_{name}_b": float(centre[2]), f"kmeans_{name}_chroma": float(np.hypot(*centre[1:]))})
    whole_l, whole_chroma = lab[..., 0], np.hypot(lab[..., 1], lab[..., 2])
    area = int(lesion.sum())
    brownish = lesion & (lab[..., 2] > 8)
    features["region_dark_brown"] = largest_region_share(brownish & (whole_l < skin[0] - 25) & (whole_l > 25), area)
    features["region_light_brown"] = largest_region_share(
        brownish & (whole_l >= skin[0] - 25) & (whole_l < skin[0] - 5), area)
    features["region_white"] = largest_region_share(
        lesion & (whole_l > skin[0] - 3) & (whole_chroma < skin_chroma - 3), area)
    neighbourhood = cv2.medianBlur(np.clip(whole_l * 2.55, 0, 255).astype(np.uint8), 15).astype(np.float32) / 2.55
    local = (whole_l - neighbourhood)[lesion]
    features.update({"local_dark_p5": float(np.percentile(local, 5)), "local_dark_share": float((local < -8).mean())})
    return features


def selected_kappas(features: np.ndarray, labels: np.ndarray, keep: int) -> list[float]:
    """Kappa per repeat of a balanced logistic rule over the `keep` features that separate best in each training
    fold (an F test), chosen and fitted inside the fold."""
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kappas = []
    for repeat in range(REPEATS):
        predicted = np.zeros_like(labels)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=repeat).split(features, labels):
            rule = make_pipeline(VarianceThreshold(), StandardScaler(), SelectKBest(f_classif, k=keep),
                                 LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000))
            predicted[test] = rule.fit(features[train], labels[train]).predict(features[test])
        kappas.append(kappa(labels, predicted, "binary"))
    return kappas


def main(ph2: Annotated[Path, typer.Argument(help="A PH2 folder with the dermatologists' annotations.")]):
    from melanomanet.abcd_rules import targets
    from melanomanet.data.ph2 import image_and_mask_files, read_annotations
    from runtime.imageio import load_image

    images, _ = image_and_mask_files(ph2)
    shipped, regions, labels = [], [], {target: [] for target in TARGETS}
    for row in read_annotations(ph2):
        found = measured(load_image(images[row["image"]]))
        if found is None:
            continue
        shipped.append(found[0])
        lab, _, mask, hairs, _ = found[1]
        regions.append(region_features(lab, mask, hairs))
        for target in TARGETS:
            labels[target].append(targets(row)[target])
    as_matrix = lambda rows: np.array([[row[name] for name in sorted(rows[0])] for row in rows], float)  # noqa: E731
    shipped_matrix, region_matrix = as_matrix(shipped), as_matrix(regions)
    both = np.hstack([shipped_matrix, region_matrix])
    print(f"PH2 dev half, {len(shipped)} measured; Cohen's kappa, mean +- sd over {REPEATS} repeats")
    for target in TARGETS:
        truth = np.array(labels[target])
        print(f"  {target} ({int(truth.sum())} positives)")
        for name, features in (("shipped features (shipped rule)", shipped_matrix),
                               ("region features alone (shipped rule)", region_matrix)):
            kappas = [kappa(truth, run, "binary") for run in cross_validated(features, truth, "binary")]
            print(f"    {name:44s} {np.mean(kappas):.2f} +- {np.std(kappas):.2f}")
        for keep in SELECTED:
            kappas = selected_kappas(both, truth, keep)
            print(f"    {f'both, best {keep} chosen in each fold':44s} {np.mean(kappas):.2f} +- {np.std(kappas):.2f}")


if __name__ == "__main__":
    typer.run(main)
