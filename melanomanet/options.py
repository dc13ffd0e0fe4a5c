"""The choices `mnet train` and `mnet eval` accept, importable without torch (the CLI validates with them)."""

from __future__ import annotations

from enum import Enum

TIMM_ARCHITECTURES = ("tf_efficientnetv2_b0", "tf_efficientnetv2_b1", "tf_efficientnetv2_b2",
                      "tf_efficientnetv2_b3", "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l",
                      "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
TORCHVISION_ARCHITECTURES = ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")
ARCHITECTURES = TIMM_ARCHITECTURES + TORCHVISION_ARCHITECTURES


class Choice(str, Enum):
    def __str__(self) -> str:
        return self.value


Architecture = Choice("Architecture", {name: name for name in ARCHITECTURES})


class Loss(Choice):
    ce = "ce"
    focal = "focal"


class Optimizer(Choice):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Scheduler(Choice):
    cosine = "cosine"
    none = "none"


class Sampling(Choice):
    shuffle = "shuffle"
    balanced = "balanced"


class Split(Choice):
    train = "train"
    val = "val"
    test = "test"
    all = "all"


Layout = Choice("Layout", {name: name for name in ("ham10000", "isic2018", "isic2017", "ph2", "pad-ufes-20",
                                                    "isic2019")})


class ReferralScore(Choice):
    predictive = "predictive"
    epistemic = "epistemic"
    max_probability = "max_probability"
