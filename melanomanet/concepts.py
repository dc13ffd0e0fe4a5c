"""FastCAV concept activation vectors (Schmalwasser et al., ICML 2025), with the reference's SGD-CAV for
comparison; concept image sets drawn by the synthetic generator with known truth, curated as folders, or read
from the dermatologists' annotations of PH2 (real dermoscopic structures)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from melanomanet.data.ph2 import image_and_mask_files, is_ph2, read_annotations
from melanomanet.data.synth import SYNTH_CLASSES, lesion_area, sample_params, write_image
from runtime.errors import MnetError
from runtime.imageio import IMAGE_SUFFIXES, load_image
from runtime.manifest import sha256_file
from runtime.preprocess import preprocess_batch

CONCEPTS = ("asymmetry", "irregular_border", "multicolor", "large_diameter")
MULTICOLOURS = ("dark_brown", "black", "blue_gray", "light_brown", "red", "white")
CAV_METADATA_KEY = "mnet.cavs"
MIN_CONCEPT_IMAGES = 4
PH2_CONCEPTS = {"streaks": ("streaks", "P"), "blue_whitish_veil": ("blue_whitish_veil", "P"),
                "regression": ("regression", "P"), "atypical_pigment_network": ("pigment_network", "AT"),
                "atypical_dots_globules": ("dots_globules", "AT")}


def concept_params(rng: np.random.Generator, concept: str, positive: bool):
    """Lesion parameters that show the concept (or clearly do not). The two sets differ in the concept
    alone: the other properties are held at neutral values (one brown, mid size, smooth, near-round, no
    hairs), position, rotation, texture and skin tone vary at random. A lobed outline changes the area of
    the same radius, so shape concepts keep the neutral lesion's area: a vector for a shape must not be a
    vector for size."""
    params = sample_params(rng, SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))], hairs=False)
    base = replace(params, asymmetry=0.0, irregularity=0.0, radius=0.22, elongation=1.1, border_blur=1.0,
                   colours=("dark_brown",), dots=0)
    if concept == "asymmetry":
        return _same_area(base, replace(base, asymmetry=float(rng.uniform(0.4, 0.6)) if positive else 0.0))
    if concept == "irregular_border":
        return _same_area(base, replace(base, irregularity=float(rng.uniform(0.3, 0.45)) if positive else 0.0))
    if concept == "multicolor":
        colours = tuple(rng.choice(MULTICOLOURS, size=4, replace=False)) if positive else ("dark_brown",)
        return replace(base, colours=colours)
    if concept == "large_diameter":
        return replace(base, radius=float(rng.uniform(0.32, 0.38)) if positive else float(rng.uniform(0.1, 0.14)))
    raise MnetError(f"unknown concept {concept!r}; known: {', '.join(CONCEPTS)}")


def _same_area(reference, params):
    return replace(params, radius=params.radius * float(np.sqrt(lesion_area(reference) / lesion_area(params))))


def write_concept_sets(out: Path, count: int, seed: int, size: int = 224, progress=None) -> None:
    """OUT/<concept>/positive/*.jpg and OUT/<concept>/negative/*.jpg, `count` images each."""
    rng = np.random.default_rng(seed)
    for concept in CONCEPTS:
        for polarity in ("positive", "negative"):
            folder = Path(out) / concept / polarity
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                write_image(folder / f"{concept}_{polarity}_{index:04d}.jpg",
                            concept_params(rng, concept, polarity == "positive"), size)
                if progress is not None:
                    progress()


def concept_sets(root: Path, seed: int) -> dict[str, tuple[list[Path], list[Path]]]:
    """Positive and negative images per concept: from PH2's annotations when `root` is a PH2 folder, else from
    <concept>/positive and <concept>/negative folders."""
    return ph2_concept_sets(root, seed) if is_ph2(Path(root)) else concept_folders(root)


def ph2_concept_sets(root: Path, seed: int) -> dict[str, tuple[list[Path], list[Path]]]:
    """Each structure the dermatologists marked (streaks, blue-whitish veil, regression present; atypical
    pigment network, atypical dots/globules) against as many random PH2 images without it (seeded); a structure
    marked on fewer than MIN_CONCEPT_IMAGES images is left out (no held-out accuracy could be measured)."""
    rng = np.random.default_rng(seed)
    images, _ = image_and_mask_files(Path(root))
    rows = [row for row in read_annotations(root) if row["image"] in images]
    sets = {}
    for concept, (column, code) in PH2_CONCEPTS.items():
        positive = [images[row["image"]] for row in rows if row[column] == code]
        absent = [images[row["image"]] for row in rows if row[column] != code]
        chosen = rng.choice(len(absent), size=min(len(positive), len(absent)), replace=False)
        if min(len(positive), len(chosen)) >= MIN_CONCEPT_IMAGES:
            sets[concept] = (positive, [absent[i] for i in sorted(chosen)])
    if not sets:
        raise MnetError(f"{root}: no PH2 structure is marked on {MIN_CONCEPT_IMAGES} images or more; no concept "
                        "set can be built")
    return sets


def concept_folders(root: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    found = {}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        sides = [sorted(f for f in (folder / side).glob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
                 for side in ("positive", "negative")]
        if all(sides):
            found[folder.name] = (sides[0], sides[1])
    if not found:
        raise MnetError(f"{root}: no <concept>/positive and <concept>/negative image folders found; "
                        "create them with `mnet concepts synth` or curate your own")
    return found


def embeddings(model, manifest, files: list[Path], batch: int = 32) -> np.ndarray:
    import torch

    rows = []
    with torch.no_grad():
        for start in range(0, len(files), batch):
            images = [load_image(f) for f in files[start:start + batch]]
            tensor = torch.from_numpy(preprocess_batch(images, manifest.preprocessing))
            rows.append(model.embed(model.forward_features(tensor)).numpy())
    return np.concatenate(rows).astype(np.float64)


def fast_cav(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FastCAV: centre all activations by their mean; the CAV is the normalised mean of the centred
    positives. Returns (cav, centring mean); decide positive when (a - mean) . cav > 0."""
    mean = np.concatenate([positive, negative]).mean(axis=0)
    direction = (positive - mean).mean(axis=0)
    return direction / (np.linalg.norm(direction) + 1e-12), mean


def labelled(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives then negatives as one feature matrix, with labels 1 and 0."""
    return np.concatenate([positive, negative]), np.r_[np.ones(len(positive)), np.zeros(len(negative))]


def sgd_cav(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """The reference's SGD-CAV: a linear SGD classifier; its normalised weight vector and intercept."""
    from sklearn.linear_model import SGDClassifier

    features, labels = labelled(positive, negative)
    classifier = SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed).fit(features, labels)
    weight = classifier.coef_[0]
    norm = np.linalg.norm(weight) + 1e-12
    return weight / norm, float(classifier.intercept_[0] / norm)


def probe_accuracy(positive: np.ndarray, negative: np.ndarray, test: np.ndarray, truth: np.ndarray) -> float:
    """Held-out accuracy of a shrinkage LDA, the best linear separation once the embedding's covariance is
    taken into account: a diagnostic, not a CAV. When it is high and FastCAV's is not, the concept is encoded
    but the embedding is far from the within-class isotropy under which FastCAV equals an SVM-CAV; when both
    are low, the model has not learnt the concept."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    features, labels = labelled(positive, negative)
    probe = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(features, labels)
    return float(probe.score(test, truth))


def split(count: int, rng: np.random.Generator, held_out: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    cut = int(round(count * (1 - held_out)))
    return order[:cut], order[cut:]


def train_cavs(checkpoint: Path, concepts_root: Path, seed: int = 0, image_size: int | None = None,
               progress=None) -> tuple[dict, dict]:
    """Returns (tensors to save, report): FastCAV vectors and means, held-out accuracies, SGD comparison, and
    a linear probe's accuracy (whether the concept is linearly encoded at all).
    The embedding depends on the input size: pass the size the bundle will be exported at (default: the
    checkpoint's training size)."""
    from melanomanet.checkpoint import load_checkpoint

    model, manifest = load_checkpoint(checkpoint)
    trained_size = manifest.preprocessing.image_size
    if image_size is not None:
        manifest = replace(manifest, preprocessing=replace(manifest.preprocessing, image_size=image_size))
    rng = np.random.default_rng(seed)
    tensors, report = {}, {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                           "dimension": model.num_features, "image_size": manifest.preprocessing.image_size,
                           "checkpoint_image_size": trained_size, "concepts": {}}
    for name, (positive_files, negative_files) in concept_sets(concepts_root, seed).items():
        positive = embeddings(model, manifest, positive_files)
        negative = embeddings(model, manifest, negative_files)
        (pos_train, pos_test), (neg_train, neg_test) = split(len(positive), rng), split(len(negative), rng)
        started = time.perf_counter()
        cav, mean = fast_cav(positive[pos_train], negative[neg_train])
        fast_seconds = time.perf_counter() - started
        started = time.perf_counter()
        sgd_vector, sgd_intercept = sgd_cav(positive[pos_train], negative[neg_train], seed)
        sgd_seconds = time.perf_counter() - started
        test, truth = labelled(positive[pos_test], negative[neg_test])
        correct = ((test - mean) @ cav > 0) == truth
        report["concepts"][name] = {
            "fastcav_accuracy": float(np.mean(correct)),
            "fastcav_accuracy_95ci": wilson_interval(int(correct.sum()), len(correct)),
            "sgdcav_accuracy": float(np.mean((test @ sgd_vector + sgd_intercept > 0) == truth)),
            "cosine_fast_vs_sgd": float(cav @ sgd_vector),
            "probe_accuracy": probe_accuracy(positive[pos_train], negative[neg_train], test, truth),
            "fastcav_seconds": fast_seconds, "sgdcav_seconds": sgd_seconds,
            "speedup": sgd_seconds / max(fast_seconds, 1e-9),
            "train_images": int(len(pos_train) + len(neg_train)), "held_out_images": int(len(test)),
        }
        tensors[f"{name}.cav"] = cav.astype(np.float32)
        tensors[f"{name}.mean"] = mean.astype(np.float32)
        if progress is not None:
            progress(name)
    return tensors, report


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float]:
    """The Wilson score 95 % interval of a proportion: honest for the few held-out images of a real concept."""
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [float(centre - half), float(centre + half)]


def keep_encoded(tensors: dict, report: dict, min_accuracy: float) -> tuple[dict, dict]:
    """Only the concepts whose held-out FastCAV accuracy reaches `min_accuracy` travel on; the report says
    which were left out (not encoded by the model, as far as these images can tell)."""
    carried = {name for name, row in report["concepts"].items() if row["fastcav_accuracy"] >= min_accuracy}
    report = {**report, "min_accuracy": min_accuracy, "concepts": {
        name: {**row, "carried": name in carried} for name, row in report["concepts"].items()}}
    return {key: value for key, value in tensors.items() if key.split(".")[0] in carried}, report


def save_cavs(path: Path, tensors: dict, report: dict) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={CAV_METADATA_KEY: json.dumps(report)})
