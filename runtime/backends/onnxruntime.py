"""ONNX Runtime backend; providers TensorRT EP > CUDA EP > CPU, chosen by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.errors import BackendError, ConfigError, ManifestError, ToolMissing
from runtime.manifest import MANIFEST_KEY, Manifest

PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32}


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: str | Path, backend: str = "ort-cpu", threads: int = 0, data: bytes | None = None):
        """`data`: the model's bytes, already read (and checked) by the caller; the file is not read again."""
        import onnxruntime as ort

        self.path = str(path)
        self.name = backend
        if backend not in PROVIDERS:
            raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(PROVIDERS)} or tensorrt")
        wanted = PROVIDERS[backend]
        if wanted[0] not in ort.get_available_providers():
            raise ToolMissing(f"{backend} needs {wanted[0]}, which this onnxruntime lacks "
                               f"(it has {', '.join(ort.get_available_providers())}); install the `gpu` extra "
                               "(onnxruntime-gpu) on a machine with an NVIDIA GPU, or use --backend ort-cpu")
        if not Path(path).is_file():
            raise ConfigError(f"{path}: model file not found; check the path given to --model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        # Worker threads spin between the parallel sections of a run (fast), but not after it, where they would
        # take the cores from the decoding, ABCD and drawing around the network (about 3 ms per image here).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        try:
            self.session = ort.InferenceSession(data if data is not None else str(path), options, providers=wanted)
        except Exception as error:
            raise BackendError(f"{path}: ONNX Runtime cannot load it as an ONNX model "
                               f"({str(error).splitlines()[0][:200]}); export one with `mnet-export onnx`") from error
        self.manifest = manifest_from_session(self.session, self.path)
        self.precision = self.manifest.precision
        self.inputs = tuple(_spec(value) for value in self.session.get_inputs())
        self.outputs = tuple(_spec(value) for value in self.session.get_outputs())
        self.providers = self.session.get_providers()

    def _run(self, feed):
        names = [spec.name for spec in self.outputs]
        return dict(zip(names, self.session.run(names, feed)))

    def close(self):
        self.session = None


def manifest_from_session(session, path: str) -> Manifest:
    metadata = session.get_modelmeta().custom_metadata_map
    if MANIFEST_KEY not in metadata:
        raise ManifestError(f"{path}: an ONNX model without a MelanomaNet manifest (exported by another tool?); "
                            "export it with `mnet-export onnx CHECKPOINT`, which embeds labels and preprocessing")
    return Manifest.from_json(metadata[MANIFEST_KEY], source=path)


def _spec(value) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in value.shape)
    return TensorSpec(value.name, np.dtype(ONNX_TYPES.get(value.type, np.float32)), shape)
