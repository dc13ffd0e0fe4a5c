"""The MelanomaNet reference release: `best_model.pth` as its trainer writes it, read without running code.

The reference trainer saves `torch.save({"epoch", "model_state_dict", "optimizer_state_dict",
"scheduler_state_dict", "metrics"})`, where `metrics` holds floats, None and numpy arrays. Such a pickle names
numpy's array-rebuilding functions; we allow exactly those (under numpy 1.x and 2.x module paths) and PyTorch's
own plain types. Any other global (`os.system`, `builtins.eval`, ...) is refused before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from melanomanet.checkpoint import make_manifest
from melanomanet.model import TORCHVISION_ARCHITECTURES, MelanomaNet, build_model
from melanomanet.pickles import read_reference_file
from runtime.errors import CheckpointError
from runtime.manifest import IMAGENET_MEAN, IMAGENET_STD, Manifest, Preprocessing

HEAD_WEIGHT = "classifier.1.weight"


def reference_state_dict(payload: dict, path: Path) -> dict[str, torch.Tensor]:
    state = payload.get("model_state_dict", payload)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if HEAD_WEIGHT not in state or not torch.is_tensor(state[HEAD_WEIGHT]):
        raise CheckpointError(f"{path}: no '{HEAD_WEIGHT}' tensor; this is not a MelanomaNet reference checkpoint "
                              "(expected backbone.* and classifier.1.* weights)")
    return state


def detect_architecture(state: dict[str, torch.Tensor]) -> str | None:
    """The torchvision EfficientNetV2 whose parameter names and shapes the state matches exactly."""
    classes = state[HEAD_WEIGHT].shape[0]
    for architecture in TORCHVISION_ARCHITECTURES:
        with torch.device("meta"):
            candidate = MelanomaNet(architecture, classes)
        expected = {name: tuple(value.shape) for name, value in candidate.state_dict().items()}
        if expected == {name: tuple(value.shape) for name, value in state.items()}:
            return architecture
    return None


def load_seed_checkpoint(path: str | Path, architecture: str | None = None, image_size: int = 384,
                         dropout: float = 0.3) -> tuple[MelanomaNet, Manifest]:
    """A `.pth` released by the MelanomaNet reference code (trainer dict or bare state_dict).

    That code resizes with torchvision's `Resize((S, S))` on PIL images (antialiased bilinear) and
    normalises with ImageNet statistics; the manifest records exactly that. Without `architecture`, the
    EfficientNetV2 size (S, M or L) is read off the weights.
    """
    path = Path(path)
    payload = read_reference_file(path)
    state = reference_state_dict(payload, path)
    if architecture is None:
        architecture = detect_architecture(state)
        if architecture is None:
            raise CheckpointError(f"{path}: the weights match none of {', '.join(TORCHVISION_ARCHITECTURES)}; "
                                  "give --arch")
    model = build_model(architecture, state[HEAD_WEIGHT].shape[0], dropout)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detected = detect_architecture(state)
        hint = f" (they are {detected})" if detected else ""
        raise CheckpointError(f"{path}: weights do not fit --arch {architecture}{hint}: "
                              f"{str(error).splitlines()[0][:200]}") from None
    preprocessing = Preprocessing(image_size, IMAGENET_MEAN, IMAGENET_STD, "bilinear_antialias")
    metrics = payload.get("metrics") if isinstance(payload.get("metrics"), dict) else {}
    scalars = {key: float(value) for key, value in metrics.items()
               if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)}
    if isinstance(payload.get("epoch"), int):
        scalars["epoch"] = float(payload["epoch"])
    manifest = make_manifest(model, image_size, "isic2019 (MelanomaNet reference release)",
                             preprocessing=preprocessing, metrics=scalars)
    return model.eval(), manifest
