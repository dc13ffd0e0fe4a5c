"""The bundle contract: the tensor names every MelanomaNet graph carries, defined once (export imports them), and
the check that a loaded graph and its manifest agree, made once at load for every backend."""

from __future__ import annotations

from runtime.errors import ManifestError

IMAGE = "image"
MC_MASK = "mc_mask"
CAM_CLASS = "cam_class"
LOGITS = "logits"
MC_LOGITS = "mc_logits"
CAM_ACTIVATIONS = "cam_activations"
CAM_GRADIENTS = "cam_gradients"
EMBEDDING = "embedding"
REQUIRED_INPUTS = (IMAGE, MC_MASK)
OUTPUTS = (LOGITS, MC_LOGITS, CAM_ACTIVATIONS, CAM_GRADIENTS, EMBEDDING)


def check_graph(backend) -> None:
    """Refuse, at load, a graph that does not fit its manifest: missing inputs or outputs, a class count that is
    not the logits' width, an input size other than the manifest's."""
    manifest, path = backend.manifest, backend.path
    inputs = {spec.name: spec for spec in backend.inputs}
    outputs = {spec.name: spec for spec in backend.outputs}
    missing = [name for name in REQUIRED_INPUTS if name not in inputs] + \
              [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise ManifestError(f"{path}: the graph lacks {', '.join(missing)}: it is not a MelanomaNet bundle (a manifest "
                            "copied onto another model?); export one with mnet-export onnx")
    width = outputs[LOGITS].shape[-1] if outputs[LOGITS].shape else None
    if width is not None and width != manifest.num_classes:
        raise ManifestError(f"{path}: the manifest names {manifest.num_classes} classes but the graph gives {width} "
                            "logits; re-export the model with mnet-export")
    image = inputs[IMAGE].shape
    size = manifest.preprocessing.image_size
    if len(image) != 4 or (image[1] is not None and image[1] != 3) or any(
            side is not None and side != size for side in image[2:]):
        raise ManifestError(f"{path}: the graph takes images of shape {image}, the manifest says 3 x {size} x {size}; "
                            "re-export the model with mnet-export")
