"""Backends behind one interface; `open_backend` picks one by name and imports it lazily."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from runtime.backends.base import Backend, TensorSpec
from runtime.backends.onnxruntime import PROVIDERS
from runtime.backends.openvino import OPENVINO_BACKENDS
from runtime.contract import check_graph
from runtime.errors import BackendError, ManifestError
from runtime.manifest import Manifest, read_sidecar, sidecar_path

# The names `--backend` takes, in one place: ONNX Runtime's provider stacks, OpenVINO's devices, then TensorRT
# engines (last).
BACKENDS = (*PROVIDERS, *OPENVINO_BACKENDS, "tensorrt")


ENGINE_SUFFIXES = (".engine", ".plan")


def open_backend(path: str | Path, backend: str = "ort-cpu", threads: int = 0, verify: bool = True) -> Backend:
    """Open `path` on `backend`. Every bundle is checked against its graph; with `verify`, an ONNX bundle is also
    checked against its sidecar's sha256 and manifest (an engine always is: it has no embedded manifest)."""
    engine = Path(path).suffix in ENGINE_SUFFIXES
    if backend == "tensorrt" and not engine:
        raise BackendError(f"{path}: --backend tensorrt runs a TensorRT engine file (.engine), not an ONNX "
                           f"bundle; build one with `mnet-export trt {Path(path).name} -o model.engine`, or run the "
                           "ONNX bundle with --backend ort-cpu, ort-cuda or ort-trt")
    if engine:
        from runtime.backends.tensorrt import TensorRTBackend

        opened: Backend = TensorRTBackend(path)
    elif backend in OPENVINO_BACKENDS:
        from runtime.backends.openvino import OpenVinoBackend

        opened = OpenVinoBackend(path, backend, threads)
        if verify:
            opened.sha256 = verify_bundle(path, opened.manifest)
    else:
        from runtime.backends.onnxruntime import OnnxRuntimeBackend

        opened = OnnxRuntimeBackend(path, backend, threads)
        if verify:
            opened.sha256 = verify_bundle(path, opened.manifest)
    check_graph(opened)
    return opened


def verify_bundle(path: str | Path, embedded: Manifest) -> str:
    """The file's sha256 must be its sidecar's, and the manifest inside it the sidecar's copy; returns the sha256."""
    if not sidecar_path(path).exists():
        raise ManifestError(f"{path}: no sidecar {sidecar_path(path).name} beside it, so the bundle cannot be checked "
                            "against the sha256 it was exported with. Keep the sidecar with the model (mnet-export "
                            "writes both), or run it unchecked with --no-verify (Predictor(..., verify=False)), "
                            "which the report records")
    recorded, facts = read_sidecar(path)
    if recorded != embedded:
        ours, theirs = asdict(recorded), asdict(embedded)
        changed = sorted(key for key in ours if ours[key] != theirs[key])
        raise ManifestError(f"{path}: the manifest inside the model differs from its sidecar's ({', '.join(changed)}): "
                            "one of them was edited after export; re-export the model with mnet-export")
    return facts["sha256"]


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
