"""Fidelity of a reduced-precision bundle against its FP32 bundle, on held-out real images: every image is
explained by both through the runtime (the same seeded MC mask), and what a clinician would see is compared:
the top prediction, the probabilities, melanoma calls at the bundle's threshold, calibration, the review decision,
the GradCAM++ map of the same class, its alignment with the lesion, and the concept scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from export.spec import FidelityTargets
from melanomanet.calibration import calibration_figures
from runtime.errors import ConfigError, MnetError
from runtime.manifest import Manifest

MEL = "MEL"
BOOTSTRAP = 1000


@dataclass(frozen=True)
class EvalImage:
    path: Path
    label: int | None  # index into the bundle's classes; None for an unlabelled folder
    set: str


CALIB_HELD_OUT_SHARE = 0.3  # of --calib set aside for fidelity when no --eval is given and no split applies


def held_out_images(sources: list[Path], manifest: Manifest, limit: int | None = None,
                    seed: int = 0, calibration_source: bool = False) -> list[EvalImage]:
    """Images the bundle never trained on, from each source: the validation split of the data it was trained on
    (recognised by its layout and recorded split seed), every labelled image of another labelled set, or every
    image of a plain folder. `calibration_source`: the one source is also --calib; outside the validation split of
    the training data, a seeded 30 % of it is set aside (and never calibrated on). `limit` draws at most that many
    per source, seeded."""
    from melanomanet.data.layouts import prepare_data
    from runtime.imageio import collect_images

    trained_layout = (manifest.extra.get("data") or {}).get("layout")
    found: list[EvalImage] = []
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise ConfigError(f"{source}: no such folder of held-out images (--eval)")
        try:
            prepared = prepare_data(source, manifest.split_seed, skip_missing=True)
        except MnetError:  # not a labelled layout: a plain folder of images
            items = [EvalImage(f.path, None, source.name) for f in collect_images([source])[0]]
        else:
            same_data = prepared.layout == trained_layout
            indices = prepared.splits["val"] if same_data else np.sort(np.concatenate(list(prepared.splits.values())))
            name = f"{source.name} ({'validation split' if same_data else 'all'})"
            items = [EvalImage(prepared.image_root[prepared.labels.images[i]], int(prepared.labels.targets[i]), name)
                     for i in indices]
            if same_data:
                calibration_source = False  # the training split is calibrated on, the validation split measured
        if calibration_source:
            aside = max(1, round(CALIB_HELD_OUT_SHARE * len(items)))
            keep = np.random.default_rng(seed).permutation(len(items))[:aside]
            items = [replace(items[i], set=f"{source.name} ({CALIB_HELD_OUT_SHARE:.0%} set aside from --calib)")
                     for i in np.sort(keep)]
        if limit is not None and len(items) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
            items = [items[i] for i in keep]
        if not items:
            raise ConfigError(f"{source}: no images to measure fidelity on")
        found.extend(items)
    return found


def calibration_images(data: Path, manifest: Manifest, count: int, tune: int, seed: int = 0,
                       held_out: list[EvalImage] = (), set_aside: bool = False):
    """`count` calibration and `tune` tuning images (preprocessed as the bundle does), drawn from the training
    split of a labelled set the bundle was trained on, or from a plain folder; the sha256 of their names.
    `held_out`: the images fidelity is measured on: left out first where they were `set_aside` from this very
    folder, and in any case refused where the calibration images overlap them (a copy too)."""
    import hashlib

    from export.stages.quantize import Calibration
    from melanomanet.data.layouts import prepare_data
    from runtime.imageio import collect_images

    data = Path(data)
    if not data.exists():
        raise ConfigError(f"{data}: no such calibration folder (--calib)")
    try:
        prepared = prepare_data(data, manifest.split_seed, skip_missing=True)
        files = [prepared.image_root[prepared.labels.images[i]] for i in prepared.splits["train"]]
    except MnetError:  # not a labelled layout: a plain folder of images
        files = [f.path for f in collect_images([data])[0]]
    if set_aside:
        measured = {Path(image.path).resolve() for image in held_out}
        files = [f for f in files if Path(f).resolve() not in measured]
    if not files:
        raise ConfigError(f"{data}: no calibration images; give a folder of a few hundred real dermoscopic images")
    order = np.random.default_rng(seed).permutation(len(files))
    chosen = [files[i] for i in order[:count]]
    tuning = [files[i] for i in order[count:count + tune]] or chosen
    refuse_overlap([*chosen, *tuning], held_out)
    digest = hashlib.sha256("\n".join(sorted(p.name for p in chosen)).encode()).hexdigest()
    return Calibration(list(chosen), list(tuning), manifest.preprocessing, digest)


def refuse_overlap(calibration: list[Path], held_out: list[EvalImage]) -> None:
    """Fidelity measured on images the quantizer calibrated or tuned on grades its own homework: refused, also
    where a held-out file is a copy (same bytes) of a calibration one."""
    from runtime.manifest import sha256_file

    seen = {sha256_file(path): path for path in calibration}
    shared = [image.path for image in held_out if sha256_file(image.path) in seen]
    if shared:
        raise ConfigError(f"{len(shared)} of the {len(held_out)} images fidelity would be measured on are also "
                          f"calibration images (e.g. {Path(shared[0]).name}); give --eval images the quantizer does "
                          "not calibrate on (or leave out --eval: part of --calib is then set aside)")


@dataclass
class Paired:
    """What both bundles said about one image."""

    label: int | None
    set: str
    reference: np.ndarray
    candidate: np.ndarray
    reference_flagged: bool
    candidate_flagged: bool
    cam_pearson: float
    inside_share_gap: float | None
    concept_gap: float | None


def explain_pairs(reference: Path, candidate: Path, images: list[EvalImage], candidate_backend: str = "ort-cpu",
                  progress: Callable[[int, int], None] | None = None, threads: int = 0) -> tuple[list[Paired], dict]:
    from runtime.predictor import Predictor

    ours = Predictor(reference, "ort-cpu", seed=0, threads=threads)
    theirs = Predictor(candidate, candidate_backend, seed=0, threads=threads)
    rule = ours.manifest.referral_rule
    pairs = []
    try:
        for done, item in enumerate(images, 1):
            first = ours.predict(item.path)
            second = theirs.predict(item.path, cam_class=first.class_names[first.cam_class])
            pairs.append(Paired(item.label, item.set, first.probabilities, second.probabilities,
                                bool(first.referral["flagged"]), bool(second.referral["flagged"]),
                                _pearson(first.heatmap, second.heatmap), _inside_gap(first, second),
                                _concept_gap(first, second)))
            if progress:
                progress(done, len(images))
    finally:
        ours.close()
        theirs.close()
    return pairs, {"rule": rule.to_dict(), "class_names": list(ours.manifest.class_names),
                   "candidate_backend": candidate_backend, "candidate_precision": theirs.backend.precision}


def fidelity(pairs: list[Paired], context: dict, targets: FidelityTargets, seed: int = 0) -> dict:
    """Every figure, the targets, and the names of the figures that missed them."""
    names = context["class_names"]
    reference = np.stack([p.reference for p in pairs])
    candidate = np.stack([p.candidate for p in pairs])
    gaps = np.abs(reference - candidate)
    pearson = np.array([p.cam_pearson for p in pairs])
    figures = {
        "images": len(pairs),
        "sets": {name: sum(p.set == name for p in pairs) for name in dict.fromkeys(p.set for p in pairs)},
        "backend": context["candidate_backend"], "precision": context["candidate_precision"],
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "max_abs_probability_difference": float(gaps.max()),
        "mean_abs_probability_difference": float(gaps.mean()),
        "referral_agreement": float(np.mean([p.reference_flagged == p.candidate_flagged for p in pairs])),
        "gradcampp_pearson": {"median": float(np.median(pearson)), "p5": float(np.percentile(pearson, 5))},
        "alignment_inside_share_max_gap": _max_or_none([p.inside_share_gap for p in pairs]),
        "concept_score_max_gap": _max_or_none([p.concept_gap for p in pairs]),
    }
    labelled = [i for i, p in enumerate(pairs) if p.label is not None]
    if labelled:
        labels = np.array([pairs[i].label for i in labelled])
        figures["ece"] = {"fp32": calibration_figures(reference[labelled], labels)["ece"],
                          "candidate": calibration_figures(candidate[labelled], labels)["ece"]}
        if MEL in names and np.any(labels == names.index(MEL)):
            figures["melanoma"] = melanoma_calls(reference[labelled], candidate[labelled], labels, names,
                                                 context["rule"], seed)
    figures["targets"] = asdict(targets)
    figures["failed"] = missed(figures, targets)
    figures["passed"] = not figures["failed"]
    return figures


def missed(figures: dict, targets: FidelityTargets) -> list[str]:
    failed = []
    if figures["top1_agreement"] < targets.top1_agreement:
        failed.append(f"top-1 agreement {figures['top1_agreement']:.3f} < {targets.top1_agreement}")
    if figures["referral_agreement"] < targets.referral_agreement:
        failed.append(f"referral agreement {figures['referral_agreement']:.3f} < {targets.referral_agreement}")
    if figures["gradcampp_pearson"]["median"] < targets.gradcampp_pearson_median:
        failed.append(f"GradCAM++ Pearson median {figures['gradcampp_pearson']['median']:.3f} < "
                      f"{targets.gradcampp_pearson_median}")
    melanoma = figures.get("melanoma")
    if targets.melanoma_sensitivity_within_interval and melanoma and not melanoma["sensitivity_within_interval"]:
        low, high = melanoma["fp32"]["sensitivity_ci95"]
        failed.append(f"melanoma sensitivity {melanoma['candidate']['sensitivity']:.3f} outside the FP32 bundle's "
                      f"95 % interval {low:.3f}-{high:.3f}")
    return failed


def melanoma_calls(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, names: list[str], rule: dict,
                   seed: int) -> dict:
    """Sensitivity and specificity of the melanoma call (p(MEL) at the bundle's threshold when its rule is one,
    otherwise a MEL top prediction) for both bundles, and the FP32 sensitivity's bootstrap interval."""
    index = names.index(MEL)
    positive = labels == index

    def calls(probabilities):
        if rule.get("score") == "class_probability" and rule.get("class_name") == MEL:
            return probabilities[:, index] >= rule["threshold"]
        return probabilities.argmax(1) == index

    ours, theirs = calls(reference), calls(candidate)
    rng = np.random.default_rng(seed)
    hits = ours[positive]
    resampled = [hits[rng.integers(0, len(hits), len(hits))].mean() for _ in range(BOOTSTRAP)]
    low, high = (float(v) for v in np.percentile(resampled, [2.5, 97.5]))
    threshold = rule["threshold"] if rule.get("class_name") == MEL else None

    def rates(called):
        return {"sensitivity": float(called[positive].mean()),
                "specificity": float((~called[~positive]).mean()) if np.any(~positive) else None}

    candidate_rates = rates(theirs)
    return {"threshold": threshold, "melanomas": int(positive.sum()), "fp32": rates(ours) | {
        "sensitivity_ci95": [low, high]}, "candidate": candidate_rates,
        "sensitivity_within_interval": bool(low <= candidate_rates["sensitivity"] <= high)}


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    a, b = first.ravel().astype(np.float64), second.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b, atol=1e-6) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _inside_gap(first, second) -> float | None:
    if not first.alignment or not second.alignment:
        return None
    return abs(first.alignment["inside_share"] - second.alignment["inside_share"])


def _concept_gap(first, second) -> float | None:
    if not first.concepts or not second.concepts:
        return None
    gaps = [abs(score["cosine"] - second.concepts["scores"][name]["cosine"])
            for name, score in first.concepts["scores"].items()]
    return max(gaps) if gaps else None


def _max_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(max(present)) if present else None
