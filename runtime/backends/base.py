"""The backend seam: load an artifact, declare inputs and outputs, `infer(feed) -> dict`, close.

Input names, dtypes and shapes are checked here, once, for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from runtime.errors import BackendError
from runtime.manifest import Manifest


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints for fixed axes, None for dynamic ones


class Backend(ABC):
    name: str = "backend"
    path: str
    manifest: Manifest
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str | None = None  # the artifact's, when it was checked against its sidecar at load
    signed_by: str | None = None  # the trusted key that signed its sidecar, when signatures were required
    precision: str = "fp32"  # the arithmetic it runs: the graph's precision, or BF16 chosen at run time

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        return self._run(feed)

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        """Release the session or engine."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        expected = {spec.name for spec in self.inputs}
        if set(feed) != expected:
            raise BackendError(f"{self.path}: inputs {sorted(feed)} given, the model declares {sorted(expected)}")
        for spec in self.inputs:
            value = feed[spec.name]
            if value.dtype != spec.dtype:
                raise BackendError(f"{self.path}: input {spec.name} is {value.dtype}, the model takes {spec.dtype}")
            if value.ndim != len(spec.shape) or any(
                want is not None and want != got for want, got in zip(spec.shape, value.shape)
            ):
                shown = "(" + ", ".join("?" if d is None else str(d) for d in spec.shape) + ")"
                raise BackendError(f"{self.path}: input {spec.name} has shape {value.shape}, the model takes {shown}")
