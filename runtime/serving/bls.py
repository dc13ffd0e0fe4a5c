"""A backend that runs the bundle's graph on another Triton model through Business Logic Scripting: the
`melanomanet` Python model calls `melanomanet_onnx` (ONNX Runtime with TensorRT on a GPU) for the network and
does the rest itself. Only usable inside Triton's Python backend (`pb_utils` is its module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.contract import EMBEDDING, IMAGE, MC_MASK, OUTPUTS
from runtime.errors import BackendError
from runtime.manifest import read_sidecar


class TritonBlsBackend(Backend):
    name = "triton-bls"

    def __init__(self, sidecar_artifact: str | Path, model_name: str, pb_utils):
        """`sidecar_artifact`: the bundle path whose sidecar (manifest, sha256) sits beside it; the bundle itself
        is served by `model_name`."""
        self.path = str(sidecar_artifact)
        self.manifest, facts = read_sidecar(sidecar_artifact)
        self.sha256 = facts["sha256"]
        self.model_name = model_name
        self.pb_utils = pb_utils
        size = self.manifest.preprocessing.image_size
        batch = None if self.manifest.extra.get("dynamic_batch") else 1
        features = self.manifest.outputs[EMBEDDING][-1]
        self.inputs = (TensorSpec(IMAGE, np.dtype(np.float32), (batch, 3, size, size)),
                       TensorSpec(MC_MASK, np.dtype(np.float32), (None, features)))
        self.outputs = tuple(TensorSpec(name, np.dtype(np.float32), tuple(
            None if isinstance(d, str) else d for d in self.manifest.outputs[name])) for name in OUTPUTS)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pb = self.pb_utils
        request = pb.InferenceRequest(model_name=self.model_name, requested_output_names=list(OUTPUTS),
                                      inputs=[pb.Tensor(name, np.ascontiguousarray(value)) for name, value in
                                              feed.items()])
        response = request.exec()
        if response.has_error():
            raise BackendError(f"{self.model_name}: {response.error().message()}")
        return {name: pb.get_output_tensor_by_name(response, name).as_numpy() for name in OUTPUTS}
