"""FastCAV vectors into a bundle: checked against the checkpoint and input size they must come from, with the
head's projections precomputed so the device scores concepts without PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from melanomanet.concepts import CAV_METADATA_KEY
from runtime.errors import MnetError


def load_cavs_for_bundle(path: Path, dimension: int, image_size: int, checkpoint_sha256: str) -> dict:
    """The manifest's `concepts` entry: names, vectors and centring means, as plain lists. The vectors must
    come from this checkpoint's embedding at the bundle's input size."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            report = json.loads((handle.metadata() or {}).get(CAV_METADATA_KEY, "{}"))
    except Exception as error:
        raise MnetError(f"{path}: not a CAV file from `mnet concepts train` ({error})") from error
    names = sorted({key.rsplit(".", 1)[0] for key in tensors})
    for name in names:
        size = tensors[f"{name}.cav"].shape[-1]
        if size != dimension:
            raise MnetError(f"{path}: concept {name!r} has dimension {size}, but the model's embedding has "
                            f"{dimension}; train the CAVs on this checkpoint (`mnet concepts train --checkpoint`)")
    trained_on = report.get("checkpoint_sha256")
    if trained_on and trained_on != checkpoint_sha256:
        raise MnetError(f"{path}: the CAVs were trained on checkpoint {report.get('checkpoint', '?')} (sha256 "
                        f"{trained_on[:12]}), not on the one being exported (sha256 {checkpoint_sha256[:12]}); "
                        "rerun `mnet concepts train --checkpoint` on this checkpoint")
    trained_size = report.get("image_size")
    if trained_size != image_size:
        raise MnetError(f"{path}: the CAVs were trained on embeddings of {trained_size or 'unknown'}-px inputs, but "
                        f"this bundle takes {image_size}-px inputs and the embedding depends on the input size; "
                        f"rerun `mnet concepts train --image-size {image_size}`")
    return {"names": names, "cavs": [tensors[f"{n}.cav"].tolist() for n in names],
            "means": [tensors[f"{n}.mean"].tolist() for n in names], "image_size": image_size}


def head_projections(model, concepts: dict) -> list[list[float]]:
    """W_c . v for every class c and concept v: the directional derivative of each class logit along the
    CAV, exact through the linear head."""
    weight = model.head.weight.detach().double().numpy()
    return (weight @ np.asarray(concepts["cavs"], np.float64).T).tolist()


def bundle_concepts(path: Path, source, image_size: int) -> dict:
    """What `mnet-export onnx --cavs` stores in the manifest, for an `export.source.Source`."""
    concepts = load_cavs_for_bundle(path, source.model.num_features, image_size, source.sha256)
    return {**concepts, "head_projections": head_projections(source.model, concepts), "source": Path(path).name}
