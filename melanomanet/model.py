"""MelanomaNet: EfficientNetV2 backbone -> global average pool -> Dropout -> Linear(9)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from runtime.errors import ConfigError

TIMM_ARCHITECTURES = ("tf_efficientnetv2_b0", "tf_efficientnetv2_b1", "tf_efficientnetv2_b2",
                      "tf_efficientnetv2_b3", "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l")
TORCHVISION_ARCHITECTURES = ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")
ARCHITECTURES = TIMM_ARCHITECTURES + TORCHVISION_ARCHITECTURES
DEFAULT_DROPOUT = 0.3


class MelanomaNet(nn.Module):
    """Module names follow the MelanomaNet reference code: `backbone.*` and `classifier.1.*`."""

    def __init__(self, architecture: str, num_classes: int = 9, dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        self.architecture = architecture
        self.backbone, self.num_features, self.target_layer = _build_backbone(architecture)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))

    @property
    def dropout_p(self) -> float:
        return self.classifier[0].p

    @property
    def head(self) -> nn.Linear:
        return self.classifier[1]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling: the GradCAM target layer's output."""
        if self.architecture in TORCHVISION_ARCHITECTURES:
            return self.backbone(images)
        return self.backbone.forward_features(images)

    @staticmethod
    def embed(feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(self.forward_features(images)))


def _build_backbone(architecture: str) -> tuple[nn.Module, int, str]:
    if architecture in TIMM_ARCHITECTURES:
        import timm

        backbone = timm.create_model(architecture, pretrained=False, num_classes=0, global_pool="")
        return backbone, backbone.num_features, "backbone.bn2"
    if architecture in TORCHVISION_ARCHITECTURES:
        import torchvision

        features = getattr(torchvision.models, architecture)(weights=None).features
        return features, features[-1].out_channels, f"backbone.{len(features) - 1}"
    raise ConfigError(f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")


def build_model(architecture: str, num_classes: int = 9, dropout: float = DEFAULT_DROPOUT,
                init_weights: str | Path | None = None) -> MelanomaNet:
    """A fresh model; `init_weights` is a local safetensors or .pth file (never a hub download)."""
    model = MelanomaNet(architecture, num_classes, dropout)
    if init_weights is not None:
        from melanomanet.checkpoint import load_initial_weights

        load_initial_weights(model, init_weights)
    return model


def intermediate_layers(model: MelanomaNet) -> list[str]:
    """Names usable as an intermediate GradCAM target: the backbone's stages."""
    if model.architecture in TORCHVISION_ARCHITECTURES:
        return [f"backbone.{i}" for i in range(1, len(model.backbone) - 1)]
    return [f"backbone.blocks.{i}" for i in range(len(model.backbone.blocks))]
