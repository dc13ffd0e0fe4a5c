"""What an export starts from: a toolkit checkpoint, or a `.pth` released by the MelanomaNet reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from melanomanet.checkpoint import load_checkpoint, load_seed_checkpoint
from melanomanet.model import MelanomaNet
from runtime.manifest import Manifest, sha256_file


@dataclass
class Source:
    model: MelanomaNet
    manifest: Manifest
    path: Path
    sha256: str


def load_source(checkpoint: Path | None = None, seed: Path | None = None, arch: str | None = None,
                image_size: int | None = None) -> Source:
    if seed is not None:
        if arch is None:
            raise ValueError("--from-seed needs --arch (efficientnet_v2_s, efficientnet_v2_m or efficientnet_v2_l)")
        model, manifest = load_seed_checkpoint(seed, arch, image_size or 384)
        path = Path(seed)
    elif checkpoint is not None:
        model, manifest = load_checkpoint(checkpoint)
        path = Path(checkpoint)
    else:
        raise ValueError("give a checkpoint, or --from-seed with --arch")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return Source(model.eval(), manifest, path, sha256_file(path))
