"""Backends behind one interface; `open_backend` picks one by name and imports it lazily."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from runtime.backends.base import Backend, TensorSpec
from runtime.backends.onnxruntime import PROVIDERS
from runtime.backends.openvino import OPENVINO_BACKENDS
from runtime.contract import check_graph
from runtime.errors import BackendError, ConfigError, ManifestError
from runtime.manifest import MANIFEST_KEY, Manifest, read_sidecar, sidecar_path
from runtime.onnxmeta import external_tensors, read_metadata
from runtime.signing import TrustedKeys

# The names `--backend` takes, in one place: ONNX Runtime's provider stacks, OpenVINO's devices, then TensorRT
# engines (last).
BACKENDS = (*PROVIDERS, *OPENVINO_BACKENDS, "tensorrt")


ENGINE_SUFFIXES = (".engine", ".plan")


def open_backend(path: str | Path, backend: str = "ort-cpu", threads: int = 0, verify: bool = True,
                 trusted_keys: TrustedKeys | None = None) -> Backend:
    """Open `path` on `backend`. Every bundle is checked against its graph and must hold all its weights (no
    external data); with `verify`, an ONNX bundle's bytes are checked against its sidecar's sha256 before any
    backend reads them (ONNX Runtime is then given those very bytes), and its manifest against the sidecar's (an
    engine always is checked: it has no embedded manifest). With `trusted_keys`, the sidecar must also carry a
    signature by one of them (runtime.signing), checked before the model is read."""
    if trusted_keys is not None and not verify:
        raise ConfigError("--no-verify cannot be combined with --trusted-keys: a signature vouches for the sha256 "
                          "the bundle is checked against")
    signer = trusted_keys.check(sidecar_path(path), str(path)) if trusted_keys is not None else None
    engine = Path(path).suffix in ENGINE_SUFFIXES
    if backend == "tensorrt" and not engine:
        raise BackendError(f"{path}: --backend tensorrt runs a TensorRT engine file (.engine), not an ONNX "
                           f"bundle; build one with `mnet-export trt {Path(path).name} -o model.engine`, or run the "
                           "ONNX bundle with --backend ort-cpu, ort-cuda or ort-trt")
    if engine:
        from runtime.backends.tensorrt import TensorRTBackend

        opened: Backend = TensorRTBackend(path)
    else:
        data = bundle_bytes(path)
        recorded, facts = checked_sidecar(path, data) if verify else (None, {})
        if backend in OPENVINO_BACKENDS:
            from runtime.backends.openvino import OpenVinoBackend

            opened = OpenVinoBackend(path, backend, threads, data)
        else:
            from runtime.backends.onnxruntime import OnnxRuntimeBackend

            opened = OnnxRuntimeBackend(path, backend, threads, data)
        if verify:
            same_manifest(path, recorded, opened.manifest)
            opened.sha256 = facts["sha256"]
    check_graph(opened)
    opened.signed_by = signer
    return opened


def bundle_bytes(path: str | Path) -> bytes:
    """The bundle's bytes, read once; refused when they are not an ONNX model with a MelanomaNet manifest, or
    when some of its weights live in other files (ONNX external data), which its sha256 would not cover."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: model file not found; check the path given to --model")
    data = Path(path).read_bytes()
    try:
        outside = external_tensors(data, path)
        manifest_found = MANIFEST_KEY in read_metadata(path, data)
    except ManifestError as error:
        raise BackendError(str(error)) from None
    if not manifest_found:
        raise ManifestError(f"{path}: an ONNX model without a MelanomaNet manifest (exported by another tool?); "
                            "export it with `mnet-export onnx CHECKPOINT`, which embeds labels and preprocessing")
    if outside:
        raise ManifestError(f"{path}: {outside} of its tensors keep their values in other files (ONNX external "
                            "data), which the bundle's sha256 does not cover; refused. Export a self-contained "
                            "bundle with mnet-export (it never writes external data)")
    return data


def checked_sidecar(path: str | Path, data: bytes) -> tuple[Manifest, dict]:
    """The sidecar's manifest and facts, once `data` (the bundle's bytes) has its recorded sha256."""
    if not sidecar_path(path).exists():
        raise ManifestError(f"{path}: no sidecar {sidecar_path(path).name} beside it, so the bundle cannot be checked "
                            "against the sha256 it was exported with. Keep the sidecar with the model (mnet-export "
                            "writes both), or run it unchecked with --no-verify (Predictor(..., verify=False)), "
                            "which the report records")
    return read_sidecar(path, data)


def same_manifest(path: str | Path, recorded: Manifest, embedded: Manifest) -> None:
    """The manifest inside the model must be the sidecar's copy."""
    if recorded != embedded:
        ours, theirs = asdict(recorded), asdict(embedded)
        changed = sorted(key for key in ours if ours[key] != theirs[key])
        raise ManifestError(f"{path}: the manifest inside the model differs from its sidecar's ({', '.join(changed)}): "
                            "one of them was edited after export; re-export the model with mnet-export")


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
