"""MelanomaNet: model, data, training and evaluation (needs the `train` extra: torch, timm)."""

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "load_checkpoint", "save_checkpoint", "MelanomaNet"]


def __getattr__(name):
    if name in ("load_checkpoint", "save_checkpoint"):
        from melanomanet import checkpoint

        return getattr(checkpoint, name)
    if name in ("build_model", "MelanomaNet"):
        from melanomanet import model

        return getattr(model, name)
    raise AttributeError(name)
