"""Native TensorRT engine backend (TensorRT 10 Python API + cuda-python), imported lazily.

An engine runs only on the GPU model and TensorRT version it was built with: its sidecar says which,
and a mismatch is refused with the command that rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec
from runtime.backends.trt_support import check_cuda, gpu_identity, import_cudart, import_tensorrt
from runtime.errors import BackendError
from runtime.manifest import read_sidecar


def rebuild_command(engine: str | Path, facts: dict) -> str:
    flag = {"fp16": " --fp16", "int8": " --int8"}.get(facts.get("precision", "fp32"), "")
    return f"mnet-export trt {Path(engine).with_suffix('.onnx').name} -o {Path(engine).name}{flag}"


def sidecar_mismatch(facts: dict, tensorrt_version: str, gpu: dict) -> str | None:
    """Why an engine built as `facts` says cannot run here; None when it can."""
    reasons = []
    if facts.get("tensorrt_version") != tensorrt_version:
        reasons.append(f"built with TensorRT {facts.get('tensorrt_version')}, this machine has {tensorrt_version}")
    if facts.get("gpu") != gpu.get("gpu") or facts.get("compute_capability") != gpu.get("compute_capability"):
        reasons.append(f"built for {facts.get('gpu')} (compute {facts.get('compute_capability')}), this GPU is "
                       f"{gpu.get('gpu')} (compute {gpu.get('compute_capability')})")
    return "; ".join(reasons) or None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.manifest, facts = read_sidecar(path)
        self.sha256 = facts["sha256"]
        self.precision = facts.get("precision", "fp32")
        trt = import_tensorrt()
        self._cudart = import_cudart()
        mismatch = sidecar_mismatch(facts, trt.__version__, gpu_identity())
        if mismatch:
            raise BackendError(f"{path}: {mismatch}. Rebuild it on this machine: {rebuild_command(path, facts)}")
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialize the engine; rebuild it: "
                               f"{rebuild_command(path, facts)}")
        self.context = self.engine.create_execution_context()
        self.stream = check_cuda(self._cudart.cudaStreamCreate())
        specs = []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            specs.append((is_input, TensorSpec(name, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))), shape)))
        self.inputs = tuple(spec for is_input, spec in specs if is_input)
        self.outputs = tuple(spec for is_input, spec in specs if not is_input)
        self._buffers: dict[str, tuple[int, int]] = {}

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                check_cuda(self._cudart.cudaFree(pointer))
            pointer = int(check_cuda(self._cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def _copy(self, destination, source, nbytes, kind):
        check_cuda(self._cudart.cudaMemcpyAsync(destination, source, nbytes, kind, self.stream))

    def _run(self, feed):
        to_device = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for spec in self.inputs:
            host = np.ascontiguousarray(feed[spec.name])
            self.context.set_input_shape(spec.name, host.shape)
            pointer = self._device_buffer(spec.name, host.nbytes)
            self._copy(pointer, host.ctypes.data, host.nbytes, to_device)
            self.context.set_tensor_address(spec.name, pointer)
        results = {}
        for spec in self.outputs:
            results[spec.name] = np.empty(tuple(self.context.get_tensor_shape(spec.name)), spec.dtype)
            self.context.set_tensor_address(spec.name,
                                            self._device_buffer(spec.name, results[spec.name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise BackendError(f"{self.path}: TensorRT execution failed")
        to_host = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, host in results.items():
            self._copy(host.ctypes.data, self._buffers[name][0], host.nbytes, to_host)
        check_cuda(self._cudart.cudaStreamSynchronize(self.stream))
        return results

    def close(self):
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None
