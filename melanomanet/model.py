"""MelanomaNet: EfficientNetV2 backbone -> global average pool -> Dropout -> Linear(9)."""

from __future__ import annotations

import torch
from torch import nn

from melanomanet.options import ARCHITECTURES, TIMM_ARCHITECTURES, TORCHVISION_ARCHITECTURES
from runtime.errors import ConfigError

DEFAULT_DROPOUT = 0.3


class MelanomaNet(nn.Module):
    """Module names follow the MelanomaNet reference code: `backbone.*` and `classifier.1.*`."""

    def __init__(self, architecture: str, num_classes: int = 9, dropout: float = DEFAULT_DROPOUT,
                 pretrained: bool = False):
        super().__init__()
        self.architecture = architecture
        self.backbone, self.num_features, self.target_layer = _build_backbone(architecture, pretrained)
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


def _build_backbone(architecture: str, pretrained: bool = False) -> tuple[nn.Module, int, str]:
    """`pretrained`: ImageNet weights from the local cache or a reachable hub (checked first, fails at once)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if pretrained:
        from melanomanet.pretrained import ensure_pretrained_available

        ensure_pretrained_available(architecture)
    if architecture in TIMM_ARCHITECTURES:
        import timm

        backbone = timm.create_model(architecture, pretrained=pretrained, num_classes=0, global_pool="")
        return backbone, backbone.num_features, "backbone.bn2"
    import torchvision

    features = getattr(torchvision.models, architecture)(weights="DEFAULT" if pretrained else None).features
    return features, features[-1].out_channels, f"backbone.{len(features) - 1}"


def build_model(architecture: str, num_classes: int = 9, dropout: float = DEFAULT_DROPOUT,
                pretrained: bool = False) -> MelanomaNet:
    """A fresh model; `pretrained`: the backbone's ImageNet weights (local cache or a reachable hub). Weights
    from a local file are the trainer's business (`melanomanet.checkpoint.load_initial_weights`)."""
    return MelanomaNet(architecture, num_classes, dropout, pretrained)


def intermediate_layers(model: MelanomaNet) -> list[str]:
    """Names usable as an intermediate GradCAM target: the backbone's stages."""
    if model.architecture in TORCHVISION_ARCHITECTURES:
        return [f"backbone.{i}" for i in range(1, len(model.backbone) - 1)]
    return [f"backbone.blocks.{i}" for i in range(len(model.backbone.blocks))]
