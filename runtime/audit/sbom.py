"""The software bill of materials: every Python distribution of an environment as a CycloneDX 1.6 JSON document
(cyclonedx-python-lib), made reproducible so that its sha256 identifies the environment: no timestamp, a serial
number derived from the components. `mnet doctor --sbom` writes it; each audit log's start record and each
export's manifest carry its sha256; `soup_table` lists the components a clinic's SOUP records need (IEC 62304)."""

from __future__ import annotations

import hashlib
import json
import uuid
from importlib.metadata import distributions
from pathlib import Path

# What each third-party component does in the pipeline (the SOUP list's "purpose"); the rest support these.
PURPOSES = {
    "numpy": "arrays: preprocessing, uncertainty, GradCAM++, ABCD arithmetic",
    "opencv-python-headless": "image decoding, resizing, segmentation and drawing (ABCD, panels)",
    "pillow": "image header probe (size before decoding), EXIF orientation",
    "isal": "PNG compression of heatmaps and panels (ISA-L deflate)",
    "onnxruntime": "runs the exported network (probabilities, MC dropout head, GradCAM++ gradients) on the CPU",
    "onnxruntime-gpu": "runs the exported network on an NVIDIA GPU (CUDA, TensorRT execution providers)",
    "tensorrt": "builds and runs TensorRT engines on the device",
    "cuda-python": "GPU memory and streams for TensorRT engines",
    "typer": "command line", "click": "command line (under typer)", "rich": "console output, tables, progress",
    "cyclonedx-python-lib": "this bill of materials",
    "tritonclient": "client of the Triton server (mnet run --server, mnet bench --server)",
    "nvidia-pytriton": "the Triton Inference Server binary and its Python backend (mnet serve)",
    "torch": "training and export only (not on the device)", "timm": "EfficientNetV2 backbones (training, export)",
    "onnx": "writes and checks the exported bundle (export only)",
}
NAMESPACE = uuid.UUID("6d3f0e52-52a4-4c3e-9a59-0e4d0c3b7a21")


def installed(paths: list[str] | None = None) -> list[tuple[str, str]]:
    """(name, version) of every distribution on `paths` (default: this interpreter's), sorted, deduplicated."""
    found = {(dist.metadata["Name"].lower().replace("_", "-"), dist.version)
             for dist in distributions(**({"path": paths} if paths is not None else {})) if dist.metadata["Name"]}
    return sorted(found)


def sbom_json(paths: list[str] | None = None) -> bytes:
    """The CycloneDX 1.6 JSON SBOM of an environment, the same bytes for the same set of distributions."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    components = installed(paths)
    bom = Bom(serial_number=uuid.uuid5(NAMESPACE, json.dumps(components)))
    for name, version in components:
        purl = PackageURL("pypi", None, name, version)
        bom.components.add(Component(name=name, version=version, type=ComponentType.LIBRARY, purl=purl,
                                     bom_ref=purl.to_string()))
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document.get("metadata", {}).pop("timestamp", None)
    if not document.get("metadata"):
        document.pop("metadata", None)
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def sbom_sha256(paths: list[str] | None = None) -> str:
    return hashlib.sha256(sbom_json(paths)).hexdigest()


def write_sbom(out: Path, paths: list[str] | None = None) -> str:
    """Write the SBOM to `out`; its sha256."""
    data = sbom_json(paths)
    Path(out).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def soup_table(components: list[tuple[str, str]]) -> str:
    """The SOUP list as a Markdown table: name, version, purpose in the pipeline (those with a purpose of their
    own first, then what they depend on)."""
    rows = ["| component | version | purpose in the pipeline |", "| --- | --- | --- |"]
    named = [(name, version) for name, version in components if name in PURPOSES]
    rows += [f"| {name} | {version} | {PURPOSES[name]} |" for name, version in named]
    rows += [f"| {name} | {version} | a dependency of the components above |" for name, version in components
             if name not in PURPOSES]
    return "\n".join(rows) + "\n"
