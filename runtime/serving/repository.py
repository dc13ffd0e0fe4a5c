"""Triton model repositories for a bundle, written from its manifest (nothing retyped):

- production (`mnet-export triton`): `melanomanet_onnx` (the graph on ONNX Runtime with the TensorRT
  accelerator, on a GPU) and `melanomanet` (the Python model: decode, MC mask, GradCAM++, uncertainty, ABCD,
  report; it calls `melanomanet_onnx` through BLS);
- standalone (`--standalone`, what `mnet serve` runs): `melanomanet` alone, running the bundle in-process.

Triton takes dim 0 of every input as the batch axis when `max_batch_size > 0`, and the graph's `mc_mask`
(T x features, shared by the batch) has none, so `melanomanet_onnx` has `max_batch_size: 0` and spells the
image's batch axis out as -1; batching happens one level up, in `melanomanet`'s dynamic batcher."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime.contract import CAM_ACTIVATIONS, CAM_GRADIENTS, EMBEDDING, IMAGE, LOGITS, MC_LOGITS, MC_MASK
from runtime.errors import ConfigError
from runtime.manifest import Manifest, read_sidecar, sidecar_path
from runtime.serving import DEFAULT_MAX_REQUEST_MB, GPU_QUEUE_DELAY_US
from runtime.serving.protocol import (
    HEATMAP_OUTPUT,
    IMAGE_INPUT,
    MODEL_NAME,
    ONNX_MODEL_NAME,
    PANEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    REPORT_OUTPUT,
)
from runtime.signing import signature_path

MODEL_FILE = Path(__file__).with_name("triton_model.py")
ENGINE_CACHE = "/tmp/melanomanet_trt_cache"


@dataclass(frozen=True)
class ServingOptions:
    max_batch: int = 8
    max_queue_delay_us: int = GPU_QUEUE_DELAY_US
    instances: int = 1
    backend: str = "ort-cpu"  # the standalone model's ONNX Runtime providers (runtime.backends)
    threads: int = 0  # ONNX Runtime threads per instance (0: its default)
    fp16: bool = True  # the production repository's TensorRT precision
    sys_path: tuple[str, ...] = ()  # folders holding `runtime` and its packages, when Triton's Python lacks them
    max_pixels: int = 50_000_000  # a request's image may declare at most this many pixels
    max_request_bytes: int = DEFAULT_MAX_REQUEST_MB * 2**20  # a request's image data may hold at most this much
    audit: str | None = None  # the audit log every instance appends to (opened by the launcher first)
    operator: str | None = None
    device_id: str | None = None
    log_names: bool = False
    audit_max_bytes: int | None = None  # rotate the audit log past this size
    trusted_keys: str | None = None  # public keys one of which must have signed the bundle (runtime.signing)

    def __post_init__(self):
        for name in ("max_batch", "instances", "max_pixels", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"--max-queue-delay-us must be 0 or more, got {self.max_queue_delay_us}")


def write_repository(bundle: Path, out: Path, options: ServingOptions, standalone: bool,
                     link: bool = False) -> Path:
    """Write the repository for `bundle` (an ONNX bundle with its sidecar, checked here) into `out`.
    `link`: symlink the bundle instead of copying it (a throwaway repository)."""
    bundle = Path(bundle)
    manifest, facts = read_sidecar(bundle)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"-o {out}: not empty; give a new folder for the model repository")
    python_version = out / MODEL_NAME / "1"
    python_version.mkdir(parents=True)
    shutil.copy(MODEL_FILE, python_version / "model.py")
    place = os.symlink if link else shutil.copy
    signature = signature_path(sidecar_path(bundle))
    signed = [signature] if signature.is_file() else []
    if standalone:
        for file in (bundle, sidecar_path(bundle), *signed):
            place(file.resolve(), python_version / file.name)
        parameters = {"mode": "standalone", "bundle": bundle.name, "backend": options.backend,
                      "threads": str(options.threads)}
    else:
        onnx_version = out / ONNX_MODEL_NAME / "1"
        onnx_version.mkdir(parents=True)
        place(bundle.resolve(), onnx_version / "model.onnx")
        place(sidecar_path(bundle).resolve(), onnx_version / "model.onnx.json")
        for file in signed:
            place(file.resolve(), onnx_version / "model.onnx.json.sig")
        (out / ONNX_MODEL_NAME / "config.pbtxt").write_text(onnx_config(manifest, options))
        parameters = {"mode": "bls", "onnx_model": ONNX_MODEL_NAME,
                      "bundle": f"../../{ONNX_MODEL_NAME}/1/model.onnx"}
    parameters.update({"max_pixels": str(options.max_pixels), "max_request_bytes": str(options.max_request_bytes),
                       "bundle_sha256": facts["sha256"],
                       "class_names": ",".join(manifest.class_names),
                       "demo_weights": "true" if manifest.is_demo else "false"})
    if options.sys_path:
        parameters["sys_path"] = os.pathsep.join(options.sys_path)
    if options.trusted_keys:
        parameters["trusted_keys"] = options.trusted_keys
    if options.audit:
        parameters.update({"audit": options.audit, "operator": options.operator or "",
                           "device_id": options.device_id or "", "log_names": str(options.log_names).lower(),
                           "audit_max_bytes": str(options.audit_max_bytes or "")})
    (out / MODEL_NAME / "config.pbtxt").write_text(python_config(manifest, options, parameters))
    (out / "README.md").write_text(repository_readme(manifest, standalone))
    return out


def python_config(manifest: Manifest, options: ServingOptions, parameters: dict[str, str]) -> str:
    outputs = [(REPORT_OUTPUT, "TYPE_STRING", [1]), (PROBABILITIES_OUTPUT, "TYPE_FP32", [manifest.num_classes]),
               (HEATMAP_OUTPUT, "TYPE_STRING", [1]), (PANEL_OUTPUT, "TYPE_STRING", [1])]
    return "\n".join([
        f'name: "{MODEL_NAME}"',
        'backend: "python"',
        f"max_batch_size: {options.max_batch}",
        f'input [ {{ name: "{IMAGE_INPUT}" data_type: TYPE_STRING dims: [ 1 ] }} ]',
        "output [",
        ",\n".join(f'  {{ name: "{name}" data_type: {kind} dims: {_dims(dims)} }}' for name, kind, dims in outputs),
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}",
        f"instance_group [ {{ kind: KIND_CPU count: {options.instances} }} ]",
        *(f'parameters {{ key: "{key}" value: {{ string_value: {json.dumps(value)} }} }}'
          for key, value in parameters.items()),
        "",
    ])


def onnx_config(manifest: Manifest, options: ServingOptions) -> str:
    """The graph on ONNX Runtime on a GPU, TensorRT accelerated (FP16, engine cache, one optimisation profile
    from a single image to `max_batch` images)."""
    size, outputs = manifest.preprocessing.image_size, manifest.outputs
    features, samples = outputs[EMBEDDING][-1], manifest.mc_samples
    batch = options.max_batch if manifest.extra.get("dynamic_batch") else 1
    image = [-1, 3, size, size]
    tensors = [(IMAGE, image), (MC_MASK, [samples, features])]
    shapes = {bound: ",".join(f"{name}:" + "x".join(str(count if d == -1 else d) for d in dims)
                              for name, dims in tensors)
              for bound, count in (("min", 1), ("opt", batch), ("max", batch))}
    accelerator = {"precision_mode": "FP16" if options.fp16 else "FP32", "max_workspace_size_bytes": str(4 << 30),
                   "trt_engine_cache_enable": "1", "trt_engine_cache_path": ENGINE_CACHE,
                   **{f"trt_profile_{bound}_shapes": value for bound, value in shapes.items()}}
    outs = [(name, [-1 if isinstance(d, str) else d for d in outputs[name]])
            for name in (LOGITS, MC_LOGITS, CAM_ACTIVATIONS, CAM_GRADIENTS, EMBEDDING)]
    return "\n".join([
        f'name: "{ONNX_MODEL_NAME}"',
        'platform: "onnxruntime_onnx"',
        "max_batch_size: 0",
        "input [",
        ",\n".join(f'  {{ name: "{name}" data_type: TYPE_FP32 dims: {_dims(dims)} }}' for name, dims in tensors),
        "]",
        "output [",
        ",\n".join(f'  {{ name: "{name}" data_type: TYPE_FP32 dims: {_dims(dims)} }}' for name, dims in outs),
        "]",
        "instance_group [ { kind: KIND_GPU count: 1 } ]",
        "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
        '  name: "tensorrt"',
        *(f'  parameters {{ key: "{key}" value: "{value}" }}' for key, value in accelerator.items()),
        "} ] } }",
        "",
    ])


def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def repository_readme(manifest: Manifest, standalone: bool) -> str:
    models = (f"- `{MODEL_NAME}` (Python backend, CPU): decodes each request's image, runs the bundle in-process "
              "with ONNX Runtime and answers with the report JSON, the probabilities and the GradCAM++ heatmap PNG "
              "(and the panel PNG when the request asks `panel=true`); Triton's dynamic batcher groups concurrent "
              "requests, and their images go through the bundle together.\n") if standalone else (
        f"- `{ONNX_MODEL_NAME}` (ONNX Runtime on the GPU, TensorRT accelerated in FP16 with an engine cache in "
        f"{ENGINE_CACHE}): the exported graph. `max_batch_size: 0` because its `mc_mask` input (the MC dropout "
        "masks, shared by the batch) has no batch axis; the image's batch axis is -1.\n"
        f"- `{MODEL_NAME}` (Python backend): decodes, preprocesses, draws the MC mask, calls `{ONNX_MODEL_NAME}` "
        "through BLS with all the images Triton's dynamic batcher grouped, then GradCAM++, uncertainty, ABCD and "
        "the report; it answers with the report JSON, the probabilities and the heatmap PNG (and the panel PNG on "
        "`panel=true`).\n")
    return f"""# MelanomaNet model repository ({manifest.architecture}, {manifest.preprocessing.image_size} px)

Written by `mnet-export triton`. {"Standalone: runs on CPU; `mnet serve` starts it for you." if standalone else
"For a GPU machine with NVIDIA Triton (NGC container `nvcr.io/nvidia/tritonserver:<yy.mm>-py3`)."}

{models}
Start it:

    tritonserver --model-repository {'REPO' if standalone else 'REPO --disable-auto-complete-config'}

The `melanomanet` model imports `runtime` from melanomanet-edge: install it into the Python Triton runs
(`pip install melanomanet-edge` with numpy<2, which Triton's Python backend stub needs), or set the model's
`sys_path` parameter to folders that hold it. {"" if standalone else
"`--disable-auto-complete-config` keeps ONNX Runtime's auto-complete from giving `melanomanet_onnx` a batch axis."}

Call it: one `image` input (BYTES: the encoded JPEG or PNG, shape [1, 1]); request parameters `class`,
`mm_per_px`, `lesion_at` (X,Y), `name`, `panel`; outputs `report` (the mnet.report JSON), `probabilities`
(FP32, {manifest.num_classes} classes: {", ".join(manifest.class_names)}), `heatmap_png`, `panel_png`.
{"DEMO WEIGHTS trained on synthetic lesions: outputs are not about real lesions. " if manifest.is_demo else ""}\
Research software, not a medical device: not for diagnosis.
"""
