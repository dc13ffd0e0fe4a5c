"""MelanomaNet Edge runtime: torch-free explained predictions from an exported bundle."""

from runtime.predictor import Predictor, Result

__all__ = ["Predictor", "Result"]
