"""MelanomaNet Edge runtime: torch-free explained predictions from an exported bundle.

`from runtime import Predictor, Result` loads the predictor on first use: importing a light block of the runtime
(`runtime.errors`, `runtime.manifest`, ...) loads neither OpenCV, ONNX Runtime nor the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.predictor import Predictor
    from runtime.result import Result

__all__ = ["Predictor", "Result"]


def __getattr__(name: str):
    if name == "Predictor":
        from runtime.predictor import Predictor

        return Predictor
    if name == "Result":
        from runtime.result import Result

        return Result
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
