"""Stage: an FP32 bundle -> an FP16 or INT8 bundle of the same contract (inputs, outputs, manifest).

INT8 is static QDQ (ONNX Runtime's quantizer): per-channel weights, INT8 activations, ranges calibrated on real
images. The calibration method is chosen by measured agreement with the FP32 bundle on tuning images (apart from
the calibration and the fidelity images), and a sensitivity pass keeps whole layer groups in FP32, by role (stem,
squeeze-excite, head, ...) or by depth (a backbone stage), the most costly first (of groups within one tuning
image of each other, the smallest), until that agreement reaches the target; after each group the other methods
are tried again. FP16 keeps the bundle's inputs and outputs FP32."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from export.spec import FidelityTargets
from export.stages.bundle import save_bundle
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.contract import EMBEDDING, IMAGE, LOGITS, MC_MASK
from runtime.errors import ConfigError
from runtime.manifest import Manifest, Preprocessing

METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_STRIDE = 1  # images whose activations are held at once during calibration (ranges merged after each)
# Where the INT8 graph will run. TensorRT takes only symmetric quantization (zero points 0), so activations are
# quantized symmetrically for it; ONNX Runtime and OpenVINO take asymmetric activation ranges, which fit SiLU's.
TARGETS = ("ort", "openvino", "tensorrt")
QUANTIZED_OPS = ["Conv", "MatMul"]
STAGE = re.compile(r"(?:^|\.)(?:blocks|features)\.(\d+)\.")  # timm's blocks.N, torchvision's features.N


@dataclass(frozen=True)
class QuantizeSpec:
    precision: str
    target: str = "ort"
    methods: tuple[str, ...] = METHODS
    calib_images: int = 300
    keep_fp32: tuple[str, ...] = ()  # layer groups kept FP32 from the start
    sensitivity: bool = True

    def __post_init__(self):
        if self.precision not in ("fp16", "int8"):
            raise ConfigError(f"--precision {self.precision!r}: a quantized bundle is fp16 or int8 (bf16 is a "
                              "run-time choice: --backend openvino-bf16 on the FP32 bundle)")
        if self.target not in TARGETS:
            raise ConfigError(f"--target {self.target!r} is not one of {', '.join(TARGETS)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"calibration method {', '.join(unknown) or 'none'}: choose from {', '.join(METHODS)}")
        if self.calib_images < 1:
            raise ConfigError("--calib-images must be at least 1")


@dataclass
class Calibration:
    """Image files, decoded and preprocessed only as they are read (never all held at once): `calibrate` sets the
    ranges, `tune` measures each trial (never the fidelity images)."""

    calibrate: list[Path]
    tune: list[Path]
    preprocessing: Preprocessing
    sha256: str

    def tensors(self, files: list[Path]) -> Iterator[np.ndarray]:
        from runtime.imageio import load_image
        from runtime.preprocess import preprocess

        for file in files:
            yield preprocess(load_image(file), self.preprocessing)[None]


def layer_groups(model) -> dict[str, list[str]]:
    """The quantizable nodes (Conv, MatMul) of an EfficientNetV2 graph by role: the stem, the squeeze-excite
    convolutions (on a pooled vector), depthwise, pointwise (1x1) and full (k x k) convolutions, and the head (the
    last convolution and the classifier's MatMul)."""
    producer = {output: node for node in model.graph.node for output in node.output}
    weights = {init.name: init for init in model.graph.initializer}
    nodes = [node for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    groups: dict[str, list[str]] = {name: [] for name in
                                    ("stem", "squeeze_excite", "depthwise", "pointwise", "full", "head")}
    for node in nodes:
        if node.op_type != "Conv" or node is convolutions[-1]:
            groups["head"].append(node.name)
        elif node is convolutions[0]:
            groups["stem"].append(node.name)
        elif _on_pooled_vector(node, producer):
            groups["squeeze_excite"].append(node.name)
        elif next((a.i for a in node.attribute if a.name == "group"), 1) > 1:
            groups["depthwise"].append(node.name)
        else:
            kernel = list(weights[node.input[1]].dims[2:]) if node.input[1] in weights else []
            groups["pointwise" if kernel == [1, 1] else "full"].append(node.name)
    return {name: members for name, members in groups.items() if members}


def stage_groups(model) -> dict[str, list[str]]:
    """The quantizable nodes by the backbone stage their weights belong to (`stage0`, `stage1`, ...), read off the
    weights' names; none where the names carry no stage. The first stage sees the image's own statistics: on
    EfficientNet-Lite0 fine-tuned on dermoscopy, its INT8 error is what breaks the network (docs/precision.md)."""
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        match = STAGE.search(node.input[1]) if node.op_type in QUANTIZED_OPS and len(node.input) > 1 else None
        if match:
            groups.setdefault(f"stage{match.group(1)}", []).append(node.name)
    return dict(sorted(groups.items(), key=lambda item: int(item[0][5:])))


def _on_pooled_vector(node, producer) -> bool:
    """A squeeze-excite convolution reads the block's global average (ReduceMean), directly or through the
    reduce convolution and its activation."""
    seen, frontier = 0, [node.input[0]]
    while frontier and seen < 4:
        source = producer.get(frontier.pop())
        seen += 1
        if source is None:
            return False
        if source.op_type == "ReduceMean":
            return True
        if source.op_type in ("Mul", "Sigmoid", "Conv"):
            frontier.extend(source.input[:1] if source.op_type != "Mul" else source.input[:2])
    return False


def to_fp16(bundle: Path):
    """The FP16 model (inputs and outputs kept FP32) and the record of how it was made."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(bundle)), keep_io_types=True)
    return model, {"method": "cast (onnxruntime.transformers.float16), inputs and outputs kept FP32"}


def to_int8(bundle: Path, calibration: Calibration, spec: QuantizeSpec, targets: FidelityTargets,
            log: Callable[[str], None] = print):
    """The INT8 QDQ model and the record of how it was made: each method's and each sensitivity trial's tuning
    agreement, the groups kept FP32."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reference = _logits(str(bundle), calibration.tensors(calibration.tune))
    with tempfile.TemporaryDirectory(prefix="mnet-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        with _quiet():
            quant_pre_process(str(bundle), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False)
        roles, stages = layer_groups(graph), stage_groups(graph)
        groups = {**roles, **stages}
        unknown = [group for group in spec.keep_fp32 if group not in groups]
        if unknown:
            raise ConfigError(f"--keep-fp32 {', '.join(unknown)}: this graph's layer groups are "
                              f"{', '.join(groups)}")
        features = embedding_width(graph)
        trials = []

        def excluded(kept: tuple[str, ...]) -> list[str]:
            return sorted({name for group in kept for name in groups[group]})

        def trial(method: str, kept: tuple[str, ...]) -> float:
            candidate = Path(work) / "trial.onnx"
            _quantize(prepared, candidate, calibration, features, method, spec.target, excluded(kept),
                      Path(work) / f"{method}.json")
            tuned = _logits(str(candidate), calibration.tensors(calibration.tune))
            agreement = float(np.mean(tuned.argmax(1) == reference.argmax(1)))
            trials.append({"method": method, "fp32_groups": list(kept), "tuning_top1_agreement": agreement})
            log(f"  {method:<10} FP32 kept: {', '.join(kept) or 'none':<40} tuning top-1 agreement {agreement:.3f}")
            return agreement

        kept = tuple(spec.keep_fp32)
        scores = {method: trial(method, kept) for method in spec.methods}
        method = max(spec.methods, key=lambda name: scores[name])
        best = scores[method]
        while spec.sensitivity and best < targets.top1_agreement:
            remaining = [group for group in groups if group not in kept]
            if not remaining:
                break
            gains = {group: trial(method, kept + (group,)) for group in remaining}
            top = max(gains.values())
            if top <= best:
                break
            # within one tuning image of the best, the group that keeps the fewest layers FP32
            close = [group for group in remaining if gains[group] > best
                     and gains[group] >= top - 1 / len(calibration.tune)]
            group = min(close, key=lambda name: len(groups[name]))
            kept, best = kept + (group,), gains[group]
            for other in spec.methods:  # the method that fitted the whole network may not fit what is left
                if other != method and (score := trial(other, kept)) > best:
                    method, best = other, score
        final = Path(work) / "final.onnx"
        _quantize(prepared, final, calibration, features, method, spec.target, excluded(kept),
                  Path(work) / f"{method}.json")
        model = onnx.load(str(final))
    record = {"method": method, "target": spec.target, "per_channel_weights": True,
              "activations": "int8 symmetric" if spec.target == "tensorrt" else "int8 asymmetric",
              "layer_groups": {name: len(members) for name, members in roles.items()},
              "stage_groups": {name: len(members) for name, members in stages.items()},
              "fp32_groups": list(kept), "tuning_top1_agreement": best, "trials": trials}
    return model, record


def _quantize(prepared: Path, out: Path, calibration: Calibration, features: int, method: str, target: str,
              excluded: list[str], cache: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        """Streams the calibration images CALIBRATION_STRIDE at a time: ONNX Runtime merges each stride's ranges
        (or histograms) and drops its activations, so memory stays flat in the number of images."""

        def __init__(self):
            self.set_range(0, len(self))

        def __len__(self):
            return len(calibration.calibrate)

        def set_range(self, start_index: int, end_index: int):
            self.images = calibration.tensors(calibration.calibrate[start_index:end_index])

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {IMAGE: image, MC_MASK: np.ones((1, features), np.float32)}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with _quiet():
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], op_types_to_quantize=QUANTIZED_OPS,
                        nodes_to_exclude=excluded, calibration_cache_path=str(cache),
                        extra_options={"ActivationSymmetric": target == "tensorrt",
                                       "QuantizeBias": target != "tensorrt",  # TensorRT: INT8 Q/DQ only
                                       "CalibStridedMinMax": CALIBRATION_STRIDE})


def embedding_width(model) -> int:
    """C of the `embedding` output (N x C), read off the graph."""
    output = next(value for value in model.graph.output if value.name == EMBEDDING)
    return output.type.tensor_type.shape.dim[-1].dim_value


def _logits(path: str, images: Iterable[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    features = next(o.shape[-1] for o in session.get_outputs() if o.name == EMBEDDING)
    mask = np.ones((1, features), np.float32)
    return np.concatenate([session.run([LOGITS], {IMAGE: image, MC_MASK: mask})[0] for image in images])


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer logs every histogram at WARNING and INFO; keep the console to our own lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def write_bundle(model, manifest: Manifest, out: Path) -> Path:
    """The quantized graph with its manifest (precision and quantization record) embedded, and its sidecar."""
    used = {node.domain for node in model.graph.node} | {"", "ai.onnx"}
    opsets = [entry for entry in model.opset_import if entry.domain in used]  # the quantizer declares many unused
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    out = save_bundle(model, manifest, out)
    OnnxRuntimeBackend(out)  # loads, so a graph ONNX Runtime cannot run is never left behind silently
    return out
