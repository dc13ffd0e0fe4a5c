"""Checkpoints: one safetensors file whose metadata holds the manifest. Nothing is ever unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from melanomanet import __version__
from melanomanet.model import MelanomaNet, build_model
from runtime.errors import CheckpointError, ConfigError, ManifestError
from runtime.manifest import MANIFEST_KEY, Manifest, Preprocessing, sha256_file

TRAIN_STATE_KEY = "mnet.train_state"
OPTIMIZER_PREFIX = "optimizer."



def make_manifest(model: MelanomaNet, image_size: int, trained_on: str, **fields) -> Manifest:
    return Manifest(
        architecture=model.architecture,
        preprocessing=fields.pop("preprocessing", Preprocessing(image_size=image_size)),
        dropout_p=model.dropout_p,
        target_layer=model.target_layer,
        trained_on=trained_on,
        tool_versions={"melanomanet-edge": __version__, "torch": torch.__version__},
        **fields,
    )


def save_checkpoint(path: str | Path, model: MelanomaNet, manifest: Manifest,
                    optimizer_tensors: dict[str, torch.Tensor] | None = None,
                    train_state: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: value.detach().contiguous().cpu() for name, value in model.state_dict().items()}
    tensors.update({OPTIMIZER_PREFIX + k: v.contiguous().cpu() for k, v in (optimizer_tensors or {}).items()})
    metadata = {MANIFEST_KEY: manifest.to_json()}
    if train_state is not None:
        metadata[TRAIN_STATE_KEY] = json.dumps(train_state)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    temporary.replace(path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors checkpoint; a pickle file is refused before any read."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: checkpoint not found; check the path")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from error
    return tensors, metadata


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[MelanomaNet, Manifest]:
    """Rebuild the model from a checkpoint and its manifest; the model is returned in eval mode."""
    tensors, metadata = read_checkpoint(path)
    if MANIFEST_KEY not in metadata:
        raise ManifestError(f"{path}: safetensors file without a MelanomaNet manifest; "
                            "was it written by `mnet train`?")
    manifest = Manifest.from_json(metadata[MANIFEST_KEY], source=str(path))
    model = build_model(manifest.architecture, manifest.num_classes, manifest.dropout_p)
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), manifest


def load_initial_weights(model: MelanomaNet, path: str | Path) -> None:
    """Backbone (and, when shapes match, head) weights from a local file. From a MelanomaNet checkpoint (a second
    stage of fine-tuning) the model inherits the input scaling its weights were trained with, and records where
    they came from, with the checkpoint's own initial weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors, metadata = read_checkpoint(path)
        if MANIFEST_KEY in metadata:
            manifest = Manifest.from_json(metadata[MANIFEST_KEY], source=str(path))
            model.initial_weights = {"source": "checkpoint", "file": path.name, "sha256": sha256_file(path),
                                     "architecture": manifest.architecture,
                                     "mean": list(manifest.preprocessing.mean), "std": list(manifest.preprocessing.std),
                                     "from": manifest.initial_weights}
    else:
        from melanomanet.pickles import read_reference_file

        payload = read_reference_file(path)
        tensors = payload.get("model_state_dict", payload.get("state_dict", payload))
    own = model.state_dict()
    usable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not usable:
        prefixed = {f"backbone.{k}": v for k, v in tensors.items()}
        usable = {k: v for k, v in prefixed.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise CheckpointError(f"{path}: no tensor matches {model.architecture}; is it the right architecture?")
    model.load_state_dict(usable, strict=False)


def _refuse_pickle(path: Path) -> None:
    """Refuse a pickle or torch.save zip before any read. A safetensors file is recognised by its own structure
    first: its 8-byte header length (which may well start with 0x80) followed by that many bytes of JSON."""
    if _is_safetensors(path):
        return
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: this is a pickle/torch.save file, which can execute code when loaded; it is refused. "
            "Checkpoints are .safetensors files written by `mnet train`; a MelanomaNet reference .pth "
            "can be converted with `mnet-export onnx --from-seed FILE.pth`."
        )


def _is_safetensors(path: Path) -> bool:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return False
        header_length = int.from_bytes(prefix, "little")
        if header_length == 0 or header_length > size - 8:
            return False
        header = handle.read(header_length)
    try:
        return isinstance(json.loads(header), dict)
    except (UnicodeDecodeError, ValueError):
        return False
