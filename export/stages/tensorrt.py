"""Stage: ONNX model -> plain TensorRT engine (trtexec can load it) + JSON sidecar.

Written against the TensorRT 10 Python API; `tensorrt` (and a GPU) are needed only here, imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.backends.trt_support import gpu_identity, import_cudart, import_tensorrt
from runtime.contract import CAM_CLASS, EMBEDDING, IMAGE, MC_MASK
from runtime.errors import ConfigError, MnetError
from runtime.imageio import IMAGE_SUFFIXES, load_image
from runtime.manifest import Manifest, Preprocessing, sha256_file, write_sidecar
from runtime.preprocess import preprocess_batch


@dataclass(frozen=True)
class EngineSpec:
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    calib_images: int = 256
    workspace_gb: float = 2.0
    batch: tuple[int, int, int] = (1, 1, 1)
    mc_samples: tuple[int, int, int] = (1, 30, 128)

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


def parse_range(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' (or a single number) -> a TensorRT optimisation-profile triple."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not (1 <= parts[0] <= parts[1] <= parts[2]):
        raise ConfigError(f"expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return parts[0], parts[1], parts[2]


def calibration_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise MnetError(f"{folder}: no calibration images ({', '.join(IMAGE_SUFFIXES)}); INT8 needs a few "
                        "hundred representative dermoscopic images")
    return files


def calibration_batches(files: list[Path], preprocessing: Preprocessing, batch: int) -> Iterator[np.ndarray]:
    """Preprocessed N x 3 x S x S float32 batches through the runtime's own preprocessing; the last,
    partial batch is padded by repeating images so every batch has the profile's shape."""
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        chunk = chunk + chunk[: batch - len(chunk)] if len(chunk) < batch else chunk
        yield np.ascontiguousarray(preprocess_batch([load_image(f) for f in chunk], preprocessing))


def build_engine(onnx_path: Path, manifest: Manifest, spec: EngineSpec, out: Path, log=print) -> Path:
    trt = import_tensorrt()
    identity = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MnetError(f"{onnx_path}: TensorRT's ONNX parser refused the model: {errors}. "
                        "Run `mnet-export check --target tensorrt` for the list of unsupported ops.")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gb * (1 << 30)))
    if spec.fp16 or spec.int8:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    size = manifest.preprocessing.image_size
    features = int(manifest.outputs[EMBEDDING][-1])
    profile.set_shape(IMAGE, *[(b, 3, size, size) for b in spec.batch])
    profile.set_shape(MC_MASK, *[(t, features) for t in spec.mc_samples])
    if manifest.cam_mode == "intermediate":
        profile.set_shape(CAM_CLASS, *[(b,) for b in spec.batch])
    config.add_optimization_profile(profile)
    if spec.int8:
        if spec.calib is None:
            raise MnetError("--int8 needs --calib DIR with representative images")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
        config.int8_calibrator = _entropy_calibrator(trt, calibration_files(spec.calib, spec.calib_images),
                                                     manifest, spec, features, out.with_suffix(".calib"))
    log(f"building {spec.precision} engine on {identity['gpu']} (this takes minutes)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MnetError(f"{onnx_path}: TensorRT could not build an engine (see the messages above)")
    out = Path(out)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_bytes(bytes(serialized))
    temporary.replace(out)
    write_sidecar(out, manifest, onnx_sha256=sha256_file(onnx_path), tensorrt_version=trt.__version__,
                  precision=spec.precision, batch=list(spec.batch), mc_samples=list(spec.mc_samples), **identity)
    return out


def _entropy_calibrator(trt, files, manifest, spec, features, cache: Path):
    cudart = import_cudart()
    batch = spec.batch[1]
    images = calibration_batches(files, manifest.preprocessing, batch)
    mask = np.ones((spec.mc_samples[1], features), np.float32)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.buffers = {}

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            try:
                feed = {IMAGE: next(images), MC_MASK: mask,
                        CAM_CLASS: np.zeros(batch, np.int64)}
            except StopIteration:
                return None
            pointers = []
            for name in names:
                host = np.ascontiguousarray(feed[name])
                if name not in self.buffers:
                    self.buffers[name] = cudart.cudaMalloc(host.nbytes)[1]
                cudart.cudaMemcpy(self.buffers[name], host.ctypes.data, host.nbytes,
                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                pointers.append(int(self.buffers[name]))
            return pointers

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()
