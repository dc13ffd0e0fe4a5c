"""The one error hierarchy: every user-facing error derives from `MnetError`, names the file at fault and how to
fix it, and carries the exit code a command ends with (`runtime.console.fail`)."""

from __future__ import annotations

from pathlib import Path


class MnetError(Exception):
    """Base class: a problem a user can fix, with a message that says how. `exit_code` is what a CLI exits with."""

    exit_code = 1


class ImageError(MnetError):
    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}. {fix}")


class ManifestError(MnetError):
    """A model file without a usable MelanomaNet manifest, or one that does not match."""


class BackendError(MnetError):
    """A backend that cannot load or run the given artifact."""


class ConfigError(MnetError):
    """An option or configuration value that cannot be honoured: a usage error, exit code 2 like click's."""

    exit_code = 2


class CheckpointError(MnetError):
    """A checkpoint that is missing, unreadable, refused (a pickle) or does not fit the architecture."""


class DatasetError(MnetError):
    """An ISIC-layout folder that cannot be used: no ground truth, missing images, an empty split."""


class ToolMissing(MnetError):
    """TensorRT, cuda-python or a GPU is missing: the command cannot run on this machine (exit code 2)."""

    exit_code = 2


class ServingError(MnetError):
    """The Triton server could not start, or a served request failed."""
