"""OpenVINO backend (the `openvino` extra): the same ONNX bundle (FP32, FP16 or INT8 QDQ) compiled for an Intel
CPU, GPU or NPU; on the CPU, BF16 is a run-time choice (the inference precision hint), not a different file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.errors import BackendError, ConfigError, ToolMissing
from runtime.manifest import MANIFEST_KEY, Manifest
from runtime.onnxmeta import read_metadata

# `--backend` name -> (OpenVINO device, inference precision hint; None keeps the device's own default)
OPENVINO_BACKENDS = {
    "openvino": ("CPU", "f32"),
    "openvino-bf16": ("CPU", "bf16"),
    "openvino-gpu": ("GPU", None),
    "openvino-npu": ("NPU", None),
}


def import_openvino():
    try:
        import openvino
    except ImportError as error:
        raise ToolMissing("the OpenVINO backend needs the `openvino` package: pip install "
                          "'melanomanet-edge[openvino]', or use --backend ort-cpu") from error
    return openvino


class OpenVinoBackend(Backend):
    def __init__(self, path: str | Path, backend: str = "openvino", threads: int = 0, data: bytes | None = None):
        """`data`: the model's bytes, already read (and checked) by the caller; the file is not read again."""
        if backend not in OPENVINO_BACKENDS:
            raise BackendError(f"unknown OpenVINO backend {backend!r}; choose one of {', '.join(OPENVINO_BACKENDS)}")
        if not Path(path).is_file():
            raise ConfigError(f"{path}: model file not found; check the path given to --model")
        ov = import_openvino()
        self.path, self.name = str(path), backend
        device, hint = OPENVINO_BACKENDS[backend]
        core = ov.Core()
        if device not in core.available_devices:
            raise ToolMissing(f"--backend {backend} needs an OpenVINO {device} device; this machine has "
                              f"{', '.join(core.available_devices) or 'none'}: use --backend openvino (CPU)")
        metadata = read_metadata(path, data)
        if MANIFEST_KEY not in metadata:
            raise BackendError(f"{path}: an ONNX model without a MelanomaNet manifest (exported by another tool?); "
                               "export it with `mnet-export onnx CHECKPOINT`")
        self.manifest = Manifest.from_json(metadata[MANIFEST_KEY], source=self.path)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            model = core.read_model(data, b"") if data is not None else core.read_model(self.path)
            self.compiled = core.compile_model(model, device, config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with multi-line reports
            raise BackendError(f"{path}: OpenVINO cannot compile it for {device} "
                               f"({str(error).strip().splitlines()[0][:200]})") from error
        run_in = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # the device's choice too
        self.precision = run_precision(run_in, self.manifest.precision)
        self.inputs = tuple(_spec(port) for port in self.compiled.inputs)
        self.outputs = tuple(_spec(port) for port in self.compiled.outputs)
        self._requests = threading.local()  # an infer request serves one call at a time: one per calling thread

    def _run(self, feed):
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        results = request.infer(feed)
        return {spec.name: np.array(results[port]) for spec, port in zip(self.outputs, self.compiled.outputs)}

    def close(self):
        self.compiled = None


def run_precision(inference_precision: str, graph_precision: str) -> str:
    """What the report records: the precision OpenVINO computes in (BF16 or FP16: a hint, or a GPU's default), or
    the graph's own where it computes in FP32 or the graph is INT8."""
    if graph_precision == "int8":
        return graph_precision
    return {"bf16": "bf16", "f16": "fp16"}.get(inference_precision, graph_precision)


def _spec(port) -> TensorSpec:
    shape = tuple(None if dimension.is_dynamic else dimension.get_length() for dimension in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), np.dtype(port.get_element_type().to_dtype()), shape)
