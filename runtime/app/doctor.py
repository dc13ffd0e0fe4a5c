"""`mnet doctor`: what is installed, which backends will work, and the fix for each that will not.

Little is imported to find out: versions come from package metadata, the GPU from nvidia-smi, the CPU's BF16 and
INT8 units from /proc/cpuinfo; onnxruntime (which the runtime needs anyway) is imported to list its execution
providers, and OpenVINO, where installed, to list its devices."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from runtime.app.precision import hardware_advice
from runtime.hardware import cpu_flags, openvino_cpu_capabilities, precision_support

PACKAGES = ("numpy", "opencv-python-headless", "pillow", "onnxruntime", "onnxruntime-gpu", "tensorrt",
            "cuda-python", "torch", "timm", "onnx", "tritonclient", "openvino", "ray", "pyarrow")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def openvino_devices() -> list[str]:
    try:
        import openvino
    except ImportError:
        return []
    return list(openvino.Core().available_devices)


def diagnose() -> list[Check]:
    versions = {package: installed(package) for package in PACKAGES}
    providers = onnxruntime_providers()
    gpu = gpu_name()
    runtime_ready = bool(providers) and all(versions[p] for p in ("numpy", "opencv-python-headless", "pillow"))
    engine_ready = bool(versions["tensorrt"] and versions["cuda-python"] and gpu)
    devices = openvino_devices()
    return [
        Check("runtime (ort-cpu)", runtime_ready and "CPUExecutionProvider" in providers,
              f"onnxruntime {versions['onnxruntime'] or versions['onnxruntime-gpu'] or 'missing'}, providers: "
              f"{', '.join(providers) or 'none'}", "pip install melanomanet-edge (installs onnxruntime, numpy, "
                                                   "OpenCV and Pillow)"),
        Check("GPU", gpu is not None, gpu or "no NVIDIA GPU found (nvidia-smi)",
              "the GPU backends need an NVIDIA GPU and its driver; on a Jetson, JetPack provides both"),
        Check("ort-cuda", "CUDAExecutionProvider" in providers, "CUDA execution provider",
              "pip install onnxruntime-gpu in place of onnxruntime (on a Jetson: the wheel NVIDIA publishes for "
              "JetPack, not PyPI's)"),
        Check("ort-trt", "TensorrtExecutionProvider" in providers, "TensorRT execution provider",
              "onnxruntime-gpu built with TensorRT, and TensorRT's libraries on the library path"),
        Check("tensorrt (engines)", engine_ready,
              f"tensorrt {versions['tensorrt'] or 'missing'}, cuda-python {versions['cuda-python'] or 'missing'}",
              "pip install 'melanomanet-edge[gpu]' on a machine with an NVIDIA GPU (JetPack ships TensorRT), then "
              "mnet-export trt model.onnx -o model.engine"),
        Check("openvino", bool(devices), f"openvino {versions['openvino'] or 'missing'}, devices: "
              f"{', '.join(devices) or 'none'}", "pip install 'melanomanet-edge[openvino]' (Intel CPUs, GPUs and "
              "NPUs; BF16 on CPUs that have it: --backend openvino-bf16)"),
        Check("CPU precisions", True, precision_support() + openvino_capabilities_note()),
        Check("precision", True, hardware_advice(cpu_flags(), gpu, bool(devices)) + "; measure it on your bundle: "
              "mnet bench --model model.onnx --precision"),
        serving_check(versions["tritonclient"]),
        Check("archives on Ray (mnet run --engine ray)", versions["ray"] is not None,
              f"ray {versions['ray'] or 'missing'}, pyarrow {versions['pyarrow'] or 'missing'} (Parquet lists)",
              "pip install 'melanomanet-edge[ray]' (Ray Data; a cluster: docs/ray.md)"),
        *model_file_checks(),
        Check("training and export", bool(versions["torch"] and versions["timm"] and versions["onnx"]),
              f"torch {versions['torch'] or 'missing'}, timm {versions['timm'] or 'missing'}, "
              f"onnx {versions['onnx'] or 'missing'}",
              "pip install 'melanomanet-edge[train,export]' (not needed on the device)"),
    ]


def model_file_checks() -> list[Check]:
    """Every model file the ABCD analysis loads, with its sha256 and whether it is the file its record names."""
    from runtime.abcde.rules import RULES_FILE
    from runtime.abcde.segmenter import ACTIVE_MODELS, recorded_and_found
    from runtime.errors import ManifestError
    from runtime.manifest import sha256_file

    fix = "reinstall the package (or retrain: make abcd)"
    checks = []
    for kind, model in ACTIVE_MODELS.get().items():
        try:
            expected, found = recorded_and_found(model)
        except ManifestError as error:
            checks.append(Check(f"ABCD segmenter ({kind})", False, str(error), fix))
            continue
        state = "matches its record" if found == expected else f"does not match its record ({expected[:12]}...)"
        checks.append(Check(f"ABCD segmenter ({kind})", found == expected,
                            f"{model.name} sha256 {(found or 'missing')[:12]}...: {state}", fix))
    rules = sha256_file(RULES_FILE) if RULES_FILE.is_file() else None
    checks.append(Check("ABCD rules", rules is not None, f"{RULES_FILE.name} sha256 {(rules or 'missing')[:12]}...",
                        fix))
    return checks


def openvino_capabilities_note() -> str:
    capabilities = openvino_cpu_capabilities()
    return "" if capabilities is None else f"; OpenVINO's CPU plugin accelerates: {', '.join(capabilities)}"


def serving_check(client_version: str | None) -> Check:
    """mnet serve needs the serving environment (Triton, numpy < 2); mnet run --server needs tritonclient."""
    from runtime.errors import ToolMissing
    from runtime.serving.server import serving_environment

    try:
        environment = serving_environment()
    except ToolMissing as error:
        return Check("serving (mnet serve)", False, f"tritonclient {client_version or 'missing'}", str(error))
    return Check("serving (mnet serve)", client_version is not None,
                 f"tritonserver in {environment.root} (Python {environment.python_version}); tritonclient "
                 f"{client_version or 'missing'}", "pip install 'melanomanet-edge[serve]' (tritonclient)")
