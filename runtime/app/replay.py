"""Re-run one logged prediction and say whether it comes out the same: the image and the bundle are found by
their sha256 in the folders given, the record's T, seed, backend and options are applied (the MC dropout mask
is drawn from the seed, so the same backend and precision reproduce the outputs exactly)."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.audit import prediction_entry
from runtime.errors import ConfigError
from runtime.imageio import IMAGE_SUFFIXES
from runtime.manifest import read_sidecar, sha256_file, sidecar_path
from runtime.options import ImageOptions
from runtime.report import report_json

BUNDLE_SUFFIXES = (".onnx", ".engine", ".plan")
# Across backends (ONNX Runtime CPU vs CUDA or TensorRT) the float results differ by rounding: this is what the
# export verification holds them to (export/spec.py: logits 1e-4), so probabilities within it count as "agree".
CROSS_BACKEND_TOLERANCE = 1e-4


def find_record(reference: str) -> dict:
    """`LOG:ID` or `LOG:SEQ` (a record's id, or its sequence number) -> the record."""
    log, _, key = reference.rpartition(":")
    if not log or not key:
        raise ConfigError(f"{reference!r}: name a record as LOG:ID or LOG:SEQ, e.g. out/audit.jsonl:3")
    path = Path(log)
    if not path.is_file():
        raise ConfigError(f"{log}: no such audit log")
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "prediction" and key in (record.get("id"), str(record.get("seq"))):
            return record
    raise ConfigError(f"{log}: no prediction record with id or sequence number {key}")


def find_by_sha256(folders: list[Path], digest: str, suffixes: tuple[str, ...], what: str) -> Path:
    """The first file under `folders` whose sha256 is `digest` (a bundle's sidecar names its sha256: read first)."""
    for folder in folders:
        candidates = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*")
                                                               if p.suffix.lower() in suffixes)
        for path in candidates:
            if path.suffix == ".onnx" and sidecar_path(path).exists():
                if read_sidecar(path)[1].get("sha256") == digest:
                    return path
            elif sha256_file(path) == digest:
                return path
    raise ConfigError(f"no {what} with sha256 {digest[:16]}... under {', '.join(map(str, folders)) or 'nothing'}; "
                      f"give the folder that holds it with --{what}s")


def replay(record: dict, images: list[Path], bundles: list[Path], backend: str | None = None) -> dict:
    """Re-run `record` and compare: `identical` (every logged output the same), `agrees` (probabilities within
    CROSS_BACKEND_TOLERANCE and the same decisions), and each difference found."""
    from runtime.predictor import Predictor

    if record.get("input_sha256") is None:
        raise ConfigError("this record has no input sha256 (an array given to the API): it cannot be replayed")
    image = find_by_sha256(images, record["input_sha256"], IMAGE_SUFFIXES, "image")
    bundle = find_by_sha256(bundles, record["bundle_sha256"], BUNDLE_SUFFIXES, "bundle")
    options = record["options"]
    predictor = Predictor(bundle, backend=backend or record["backend"], mc_samples=record["mc_samples"],
                          seed=record["seed"], abcde=options.get("abcde", True))
    try:
        asked = ImageOptions(options.get("class"), options.get("mm_per_px"),
                             tuple(options["lesion_at"]) if options.get("lesion_at") else None)
        result = predictor.predict_batch([image], options=[asked])[0]
        if isinstance(result, Exception):
            raise result
        again = prediction_entry(report_json(result.to_dict()), predictor.manifest, predictor.audit_options(asked),
                                 input_sha256=record["input_sha256"])
    finally:
        predictor.close()
    return compare(record["outputs"], again["outputs"]) | {"image": str(image), "bundle": str(bundle),
                                                           "backend": predictor.backend.name}


def compare(logged: dict, now: dict) -> dict:
    differences = [key for key in logged if logged[key] != now.get(key)]
    gaps = [abs(logged["probabilities"][name] - now["probabilities"].get(name, float("nan")))
            for name in logged["probabilities"]]
    largest = max(gaps) if gaps else 0.0
    decisions = ("predicted", "explained_class", "abcde_status")
    agrees = largest <= CROSS_BACKEND_TOLERANCE and all(logged[key] == now[key] for key in decisions) and \
        logged["review"]["flagged"] == now["review"]["flagged"]
    return {"identical": not differences, "agrees": agrees, "differences": differences,
            "max_abs_probability_difference": largest}
