"""The one error hierarchy: every user-facing error derives from `MnetError`, names the file at fault and how to
fix it, and carries the exit code a command ends with (`runtime.app.console.fail`).

The exit-code rule of every command: 2 when the command line asks for what cannot be done (an option value it
cannot honour, a file or folder named on it that does not exist, a backend or tool this machine lacks, an extra
that is not installed); 1 when an input that exists cannot be processed (an unreadable image, a refused bundle)
or a batch finished with failed images; 130 when interrupted."""

from __future__ import annotations

from pathlib import Path


class MnetError(Exception):
    """Base class: a problem a user can fix, with a message that says how. `exit_code` is what a CLI exits with."""

    exit_code = 1

    def as_outcome(self) -> MnetError:
        """This error kept as a value (one image's outcome in a batch), without its traceback and the exceptions
        it was raised from: their frames hold the image's data (and, through the callers' frames, the whole
        batch's) in a reference cycle that only Python's cycle collector would free, much later."""
        self.__traceback__ = self.__context__ = self.__cause__ = None
        return self


class ImageError(MnetError):
    """An image that cannot be used; `usage`: the command line is at fault (the file does not exist, a point
    given for it lies outside it), so a command ends with 2 rather than 1."""

    def __init__(self, path: str | Path, problem: str, fix: str, usage: bool = False):
        self.path = str(path)
        if usage:
            self.exit_code = 2
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


class Interrupted(MnetError):
    """A batch stopped by Ctrl-C (or SIGTERM) after writing the rows of every report already written."""

    exit_code = 130


class ServingError(MnetError):
    """The Triton server could not start, or a served request failed."""
