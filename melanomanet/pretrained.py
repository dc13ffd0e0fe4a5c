"""ImageNet weights for the backbone: timm's (Hugging Face Hub) or torchvision's, from the local cache or a
reachable hub. Where neither is there, fail at once with the offline alternative instead of hanging."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from runtime.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class PretrainedUnavailable(ConfigError):
    pass


def ensure_pretrained_available(architecture: str) -> None:
    """Return when the weights are cached or their host answers; raise `PretrainedUnavailable` otherwise."""
    from melanomanet.options import TIMM_ARCHITECTURES

    source, cached = _timm_source(architecture) if architecture in TIMM_ARCHITECTURES else \
        _torchvision_source(architecture)
    if cached:
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") and architecture in TIMM_ARCHITECTURES
    problem = "HF_HUB_OFFLINE is set" if offline else _unreachable(source)
    if problem:
        raise PretrainedUnavailable(
            f"--pretrained needs the ImageNet weights of {architecture} from {source}, which are not in the "
            f"local cache and cannot be downloaded here ({problem}). Download them on a machine with access "
            "and pass the file with --init-weights FILE (a timm or torchvision weight file), or train "
            "without --pretrained.")


def _timm_source(architecture: str) -> tuple[str, bool]:
    import huggingface_hub
    import timm

    repo = timm.models.get_pretrained_cfg(architecture).hf_hub_id
    cached = any(isinstance(huggingface_hub.try_to_load_from_cache(repo, name), str) for name in TIMM_WEIGHT_FILES)
    return f"{huggingface_hub.constants.ENDPOINT}/{repo}", cached


def _torchvision_source(architecture: str) -> tuple[str, bool]:
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(architecture).DEFAULT.url
    cached = (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()
    return url, cached


def _unreachable(url: str) -> str:
    """'' when a TCP connection to the URL's host opens within the probe timeout, else why not."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=PROBE_TIMEOUT_S):
            return ""
    except OSError as error:
        return f"{parsed.hostname}:{port} unreachable: {error.strerror or error}"


def hub_record(architecture: str) -> dict:
    """Where hub weights came from, for the manifest."""
    from melanomanet.options import TIMM_ARCHITECTURES

    source, _ = _timm_source(architecture) if architecture in TIMM_ARCHITECTURES else \
        _torchvision_source(architecture)
    return {"source": "hub", "url": source}
