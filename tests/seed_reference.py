"""The MelanomaNet reference code's model layout, to build seed-format `.pth` files in tests."""

import torch
import torchvision


class SeedModel(torch.nn.Module):
    """torchvision EfficientNetV2-S features as `backbone`, `classifier` = Sequential(Dropout, Linear)."""

    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.efficientnet_v2_s(weights=None).features
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(1280, 9))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.backbone(x)), 1))


def save_seed_checkpoint(model: torch.nn.Module, path, epoch: int = 1, metrics: dict | None = None):
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": {},
                "metrics": metrics or {}}, path)
    return path
