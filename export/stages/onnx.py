"""Stage: checkpoint -> self-contained ONNX model with the manifest in its metadata."""

from __future__ import annotations

import contextlib
import io
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from export.source import Source
from export.spec import ExportSpec
from export.stages.bundle import save_bundle
from export.wrappers import IntermediateLayerGraph, LastLayerGraph
from melanomanet.model import intermediate_layers
from runtime.audit.sbom import sbom_sha256
from runtime.contract import OUTPUTS
from runtime.errors import ConfigError, MnetError
from runtime.manifest import Manifest


def to_onnx(source: Source, spec: ExportSpec, out: Path, concepts: dict | None = None) -> Path:
    model = source.model
    layer = model.target_layer if not spec.intermediate else spec.cam_layer
    if spec.intermediate and spec.dynamic_batch:
        raise ConfigError("--dynamic-batch works with the last-layer export only (an inner layer's gradient is traced "
                          "for a batch of 1); drop --dynamic-batch, or use --cam-layer last")
    if spec.intermediate and layer not in intermediate_layers(model):
        raise MnetError(f"--cam-layer {layer!r} is not a stage of {model.architecture}; use 'last' or one of: "
                        f"{', '.join(intermediate_layers(model))}")
    if spec.intermediate:
        graph = IntermediateLayerGraph(model, layer, spec.image_size)
        example = (_image(1, spec), _mask(spec, model), torch.zeros(1, dtype=torch.int64))
        dynamic = (None, {0: torch.export.Dim("mc_samples", min=1, max=4096)}, None)
    else:
        graph = LastLayerGraph(model)
        batch = 2 if spec.dynamic_batch else 1
        example = (_image(batch, spec), _mask(spec, model))
        dynamic = ({0: torch.export.Dim("batch", min=1, max=256)} if spec.dynamic_batch else None,
                   {0: torch.export.Dim("mc_samples", min=1, max=4096)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, example, dynamo=True, opset_version=spec.opset,
                                    input_names=list(spec.input_names), output_names=list(OUTPUTS),
                                    dynamic_shapes=dynamic, verbose=False)
    manifest = bundle_manifest(source, spec, layer, program.model.graph.outputs, concepts)
    return save_bundle(program.model_proto, manifest, out)


def bundle_manifest(source: Source, spec: ExportSpec, layer: str, outputs, concepts: dict | None) -> Manifest:
    shapes = {value.name: [d if isinstance(d, int) else str(d) for d in value.shape] for value in outputs}
    preprocessing = source.manifest.preprocessing.__class__(
        spec.image_size, source.manifest.preprocessing.mean, source.manifest.preprocessing.std,
        source.manifest.preprocessing.interpolation)
    extra = {**source.manifest.extra, "inputs": list(spec.input_names), "opset": spec.opset,
             "dynamic_batch": spec.dynamic_batch and not spec.intermediate, "source_file": source.path.name,
             "export_sbom_sha256": sbom_sha256()}
    extra.pop("train_config", None)
    return source.manifest.with_updates(
        preprocessing=preprocessing, target_layer=layer, mc_samples=spec.mc_samples, outputs=shapes,
        source_sha256=source.sha256, tolerances=spec.as_dict()["tolerances"], tool_versions=tool_versions(),
        extra=extra, model_card=MODEL_CARD, cam_mode="intermediate" if spec.intermediate else "last",
        concepts=concepts or {})


MODEL_CARD = ("docs/model-card.md of melanomanet-edge: intended use (research use only, not for diagnosis), training "
              "data and its licence, metrics with intervals, limits")


def tool_versions() -> dict:
    found = {}
    for package in ("melanomanet-edge", "torch", "timm", "onnx", "onnxscript", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _image(batch: int, spec: ExportSpec) -> torch.Tensor:
    return torch.zeros(batch, 3, spec.image_size, spec.image_size)


def _mask(spec: ExportSpec, model) -> torch.Tensor:
    return torch.ones(spec.mc_samples, model.num_features)

