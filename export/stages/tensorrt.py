"""Stage: ONNX model -> plain TensorRT engine (trtexec can load it) + JSON sidecar.

Written against the TensorRT 10 Python API; `tensorrt` (and a GPU) are needed only here, imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.backends.trt_support import gpu_identity, import_tensorrt
from runtime.contract import CAM_CLASS, EMBEDDING, IMAGE, MC_MASK
from runtime.errors import ConfigError, MnetError
from runtime.manifest import Manifest, sha256_file, write_sidecar


@dataclass(frozen=True)
class EngineSpec:
    fp16: bool = False
    int8: bool = False  # explicit quantization: the bundle's own Q/DQ scales (mnet-export quantize), no calibrator
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


def check_precision(onnx_path: Path, manifest: Manifest, spec: EngineSpec) -> None:
    """INT8 engines come from a QDQ bundle made for TensorRT (symmetric scales); the bundle's precision decides,
    so an INT8 bundle is never built as if it were FP32, nor an FP32 one silently calibrated."""
    if spec.int8 and manifest.precision != "int8":
        raise ConfigError(f"{onnx_path}: --int8 builds from an INT8 (QDQ) bundle, and this one is "
                          f"{manifest.precision}; make one first: mnet-export quantize {Path(onnx_path).name} "
                          "--precision int8 --target tensorrt --calib DIR -o model.int8.onnx")
    if manifest.precision == "int8" and not spec.int8:
        raise ConfigError(f"{onnx_path}: an INT8 (QDQ) bundle builds with --int8")
    if manifest.precision == "int8" and manifest.quantization.get("target") != "tensorrt":
        raise ConfigError(f"{onnx_path}: this INT8 bundle has asymmetric activation scales (made for "
                          f"{manifest.quantization.get('target', 'ort')}); TensorRT takes symmetric ones only: "
                          "mnet-export quantize ... --target tensorrt")


def build_engine(onnx_path: Path, manifest: Manifest, spec: EngineSpec, out: Path, log=print) -> Path:
    check_precision(onnx_path, manifest, spec)
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
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.int8:
        # Explicit quantization: TensorRT runs INT8 exactly where the graph's Q/DQ pairs say, with their scales.
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    size = manifest.preprocessing.image_size
    features = int(manifest.outputs[EMBEDDING][-1])
    profile.set_shape(IMAGE, *[(b, 3, size, size) for b in spec.batch])
    profile.set_shape(MC_MASK, *[(t, features) for t in spec.mc_samples])
    if manifest.cam_mode == "intermediate":
        profile.set_shape(CAM_CLASS, *[(b,) for b in spec.batch])
    config.add_optimization_profile(profile)
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

