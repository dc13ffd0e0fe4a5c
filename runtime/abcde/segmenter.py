"""The learned lesion segmenters (`melanomanet/segmenter.py` trains them) run with ONNX Runtime: a lesion
probability per pixel of a 128 x 96 view of the image. Two ship: `dermoscopy`, trained on HAM10000's expert masks,
and `clinical`, the same network fine-tuned on PAD-UFES-20's smartphone photos (HAM10000 replayed beside), tried
when the first one's outline fails its check. Each file ships in the package beside its sidecar record and is
checked against the sha256 recorded there before it is loaded."""

from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from runtime.errors import ManifestError
from runtime.manifest import sha256_file

INPUT_SIZE = (128, 96)  # width, height
MEAN = np.array([0.6, 0.45, 0.4], np.float32)
STD = np.array([0.2, 0.2, 0.2], np.float32)
MODELS = Path(__file__).parent / "models"
MODEL_FILE = MODELS / "lesion_segmenter.onnx"
CLINICAL_MODEL_FILE = MODELS / "clinical_segmenter.onnx"
KINDS = ("dermoscopy", "clinical")
ACTIVE_MODELS: ContextVar[dict[str, Path]] = ContextVar(
    "segmenter_models", default={"dermoscopy": MODEL_FILE, "clinical": CLINICAL_MODEL_FILE})


@contextmanager
def using_model(model: Path, kind: str = "clinical") -> Iterator[None]:
    """Segment with another file for the `kind` segmenter (its record beside it) inside the block: the
    cross-validation folds of `mnet train-segmenter --clinical`, each measured on the photos it never saw."""
    token = ACTIVE_MODELS.set({**ACTIVE_MODELS.get(), kind: Path(model)})
    try:
        yield
    finally:
        ACTIVE_MODELS.reset(token)


def model_records() -> list[Path]:
    """The records that name the ABCD analysis's model bytes (each segmenter's, holding its ONNX file's sha256,
    and the rules), as signed by `mnet-export sign --abcd`."""
    from runtime.abcde.rules import RULES_FILE

    return [*(model.with_suffix(".json") for model in ACTIVE_MODELS.get().values()), RULES_FILE]


def segmenter_files() -> dict[str, str]:
    """The sha256 of each segmenter in use, by kind (what a batch records to know its outputs' origin)."""
    return {kind: segmenter_sha256(model) for kind, model in ACTIVE_MODELS.get().items()}


def record(model: Path = MODEL_FILE) -> dict:
    try:
        return json.loads(model.with_suffix(".json").read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{model.with_suffix('.json')}: the segmenter's record cannot be read ({error}); "
                            "reinstall the package (or retrain: mnet train-segmenter)") from None


def segmenter_sha256(model: Path = MODEL_FILE) -> str:
    return record(model)["sha256"]


def recorded_and_found(model: Path = MODEL_FILE) -> tuple[str, str | None]:
    """The sha256 the segmenter's record names, and that of the file there (None: missing)."""
    return segmenter_sha256(model), sha256_file(model) if model.is_file() else None


@lru_cache(maxsize=2)
def session(model: Path = MODEL_FILE):
    """The ONNX Runtime session, once the file matches its recorded sha256 (one thread: the analysis runs
    beside the classifier)."""
    import onnxruntime as ort

    expected, found = recorded_and_found(model)
    if found != expected:
        raise ManifestError(f"{model}: missing, or not the segmenter its record names (sha256 {expected[:12]}...); "
                            "reinstall the package (or retrain: mnet train-segmenter)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def lesion_probability(image_rgb: np.ndarray, size: tuple[int, int] | None = None,
                       kind: str = "dermoscopy") -> np.ndarray:
    """Lesion probability (float32, 0-1) by the `kind` segmenter of every pixel of `image_rgb` resized to `size`
    (width, height; default: the image's). Portrait images are turned to landscape for the network and back."""
    height, width = image_rgb.shape[:2]
    portrait = height > width
    view = np.ascontiguousarray(np.rot90(image_rgb)) if portrait else image_rgb
    small = cv2.resize(view, INPUT_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    tensor = ((small - MEAN) / STD).transpose(2, 0, 1)[None]
    model = session(ACTIVE_MODELS.get()[kind])
    probability = model.run(None, {"image": np.ascontiguousarray(tensor, np.float32)})[0][0, 0]
    if portrait:
        probability = np.ascontiguousarray(np.rot90(probability, -1))
    target = size or (width, height)
    return cv2.resize(probability, target, interpolation=cv2.INTER_LINEAR)
