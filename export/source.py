"""What an export starts from: a toolkit checkpoint, or a `.pth` released by the MelanomaNet reference."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from melanomanet.checkpoint import load_checkpoint
from melanomanet.model import MelanomaNet
from melanomanet.reference import load_seed_checkpoint
from runtime.errors import ConfigError
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
        model, manifest = load_seed_checkpoint(seed, arch, image_size or 384)
        path = Path(seed)
    elif checkpoint is not None:
        model, manifest = load_checkpoint(checkpoint)
        path = Path(checkpoint)
    else:
        raise ConfigError("give a checkpoint, or --from-seed best_model.pth (a MelanomaNet reference release)")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return Source(model.eval(), manifest, path, sha256_file(path))


def with_calibration(source: Source, path: Path) -> Source:
    """The source with a `mnet calibrate` temperature and referral rule in its manifest (fitted on this very
    checkpoint, or refused)."""
    from melanomanet.calibration import load_calibration

    temperature, referral = load_calibration(path, source.sha256)
    return replace(source, manifest=source.manifest.with_updates(temperature=temperature, referral=referral))
