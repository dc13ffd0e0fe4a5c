"""Backends behind one interface; `open_backend` picks one by name and imports it lazily."""

from __future__ import annotations

from pathlib import Path

from runtime.backends.base import Backend, TensorSpec

BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "tensorrt")


def open_backend(path: str | Path, backend: str = "ort-cpu", threads: int = 0) -> Backend:
    if backend == "tensorrt" or Path(path).suffix in (".engine", ".plan"):
        from runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, backend, threads)


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
