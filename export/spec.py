"""What an export produces: input/output names, axes, opset, and the tolerances it is verified against."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from runtime.contract import CAM_CLASS, IMAGE, MC_MASK


@dataclass(frozen=True)
class Tolerances:
    """fp32 ONNX Runtime against PyTorch on the same inputs."""

    logits_abs: float = 1e-4
    mc_logits_abs: float = 1e-4
    probabilities_abs: float = 1e-5
    embedding_abs: float = 1e-4
    activations_abs: float = 1e-3
    gradients_rel: float = 1e-5
    head_under_mask_abs: float = 1e-5  # the MC head alone, applied to the exported embedding
    cam_pearson: float = 0.999


@dataclass(frozen=True)
class FidelityTargets:
    """A reduced-precision bundle (FP16, INT8, or BF16 at run time) against its FP32 bundle on held-out real
    images: what it must reach to be accepted (`mnet-export quantize`, `mnet bench --precision`)."""

    top1_agreement: float = 0.99
    referral_agreement: float = 0.98
    gradcampp_pearson_median: float = 0.98
    melanoma_sensitivity_within_interval: bool = True  # the FP32 bundle's bootstrap 95 % interval


@dataclass(frozen=True)
class ExportSpec:
    image_size: int
    cam_layer: str = "last"
    dynamic_batch: bool = False
    opset: int = 20
    mc_samples: int = 30
    tolerances: Tolerances = field(default_factory=Tolerances)

    @property
    def intermediate(self) -> bool:
        return self.cam_layer != "last"

    @property
    def input_names(self) -> tuple[str, ...]:
        base = (IMAGE, MC_MASK)
        return base + (CAM_CLASS,) if self.intermediate else base

    def as_dict(self) -> dict:
        return asdict(self)
