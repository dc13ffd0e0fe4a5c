"""Reading a reference `.pth` without running code: PyTorch's restricted unpickler, allowing exactly the globals
of plain numpy arrays and scalars (under numpy 1.x and 2.x module paths) and PyTorch's own plain types. Used by
`melanomanet.reference` (converting the release) and `melanomanet.checkpoint` (--init-weights from a .pth)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from runtime.errors import CheckpointError, ConfigError

NUMPY_MODULES = ("numpy._core.multiarray", "numpy.core.multiarray")
NUMERIC_DTYPE_CODES = "?bhilqBHILQefdgFDG"


def numpy_array_globals() -> list:
    """What a pickle of plain numpy arrays and scalars names, and nothing else."""
    from numpy._core import multiarray

    named = [(function, f"{module}.{function.__name__}")
             for module in NUMPY_MODULES for function in (multiarray._reconstruct, multiarray.scalar)]
    return named + [np.ndarray, np.dtype] + [type(np.dtype(code)) for code in NUMERIC_DTYPE_CODES]


def read_reference_file(path: str | Path) -> dict:
    """The payload of a reference `.pth`, unpickled with PyTorch's restricted unpickler only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        with torch.serialization.safe_globals(numpy_array_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"it names `{_qualified(named.group(1))}`" if named else "it holds an object that is not plain data"
        raise CheckpointError(
            f"{path}: refused without running it: {what}, which is neither a tensor, a number, a string nor a "
            "numpy array, and loading it could execute code. Only plain checkpoints are read; if you trust the "
            "file, re-save it as plain tensors: torch.save(checkpoint['model_state_dict'], 'plain.pth')"
        ) from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({error}); expected the reference "
                              "trainer's best_model.pth or a saved state_dict") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, expected a dict (a state_dict, or the "
                              "reference trainer's dict with 'model_state_dict')")
    return payload


def _qualified(name: str) -> str:
    """PyTorch's message names builtins without their module."""
    return name if "." in name else f"builtins.{name}"
