"""Lazy imports of TensorRT and cuda-python, and the GPU's identity; shared by the engine builder."""

from __future__ import annotations

from runtime.errors import BackendError, ToolMissing

INSTALL_HINT = ("TensorRT engines are built and run on the machine that uses them (an NVIDIA GPU with TensorRT 10): "
                "install the `gpu` extra there (pip install 'melanomanet-edge[gpu]', or JetPack's TensorRT on a "
                "Jetson) and run `mnet-export trt` on that machine; elsewhere use the ONNX bundle with "
                "--backend ort-cpu.")


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise ToolMissing(f"TensorRT is not installed ({error}). {INSTALL_HINT}") from error
    return tensorrt


def import_cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as error:
            raise ToolMissing(f"cuda-python is not installed ({error}). {INSTALL_HINT}") from error
    return cudart


def check_cuda(result):
    """cuda-python calls return (status, *values); raise on a bad status, return the values."""
    status, *values = result if isinstance(result, tuple) else (result,)
    if int(status) != 0:
        raise BackendError(f"CUDA call failed: {status}")
    return values[0] if len(values) == 1 else values


def gpu_identity() -> dict:
    cudart = import_cudart()
    status, properties = cudart.cudaGetDeviceProperties(0)
    if int(status) != 0:
        raise ToolMissing(f"no usable NVIDIA GPU (cudaGetDeviceProperties: {status}). {INSTALL_HINT}")
    name = properties.name.decode(errors="replace") if isinstance(properties.name, bytes) else str(properties.name)
    return {"gpu": name.strip("\x00").strip(), "compute_capability": f"{properties.major}.{properties.minor}"}
