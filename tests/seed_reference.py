"""The MelanomaNet reference code's model layout and trainer checkpoint, to build `.pth` files in tests."""

import copy
import io
import zipfile

import numpy as np
import torch
import torchvision


class SeedModel(torch.nn.Module):
    """torchvision EfficientNetV2 features as `backbone`, `classifier` = Sequential(Dropout, Linear)."""

    def __init__(self, architecture: str = "efficientnet_v2_s"):
        super().__init__()
        self.backbone = getattr(torchvision.models, architecture)(weights=None).features
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(1280, 9))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.backbone(x)), 1))


def trainer_metrics() -> dict:
    """What the reference trainer's validation returns: floats, None and numpy arrays (and numpy scalars)."""
    rng = np.random.default_rng(0)
    return {"val_loss": 0.61, "accuracy": 0.8561, "balanced_accuracy": np.float64(0.79), "f1_weighted": 0.8564,
            "auc_macro": None, "confusion_matrix": rng.integers(0, 50, (9, 9)).astype(np.int64),
            "per_class_sensitivity": rng.uniform(0, 1, 9), "per_class_specificity": rng.uniform(0, 1, 9),
            "per_class_auc": rng.uniform(0.5, 1, 9).astype(np.float64)}


def save_seed_checkpoint(model: torch.nn.Module, path, epoch: int = 1, metrics: dict | None = None):
    """`torch.save` of the dict the reference trainer writes, with a real AdamW and cosine-schedule state
    (stepped on a copy of the head, so `model` keeps its weights)."""
    head = copy.deepcopy(model.classifier)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50)
    head(torch.ones(2, 1280)).sum().backward()
    optimizer.step()
    scheduler.step()
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(), "scheduler_state_dict": scheduler.state_dict(),
                "metrics": trainer_metrics() if metrics is None else metrics}, path)
    return path


def as_numpy1_pickle(path):
    """Rewrite the pickle's numpy module paths to numpy 1.x's (`numpy.core.multiarray`), as older files have."""
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in entries if n.endswith("data.pkl"))
    assert b"numpy._core.multiarray" in entries[name]
    entries[name] = entries[name].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for filename, data in entries.items():
            archive.writestr(filename, data)
    path.write_bytes(buffer.getvalue())
    return path
