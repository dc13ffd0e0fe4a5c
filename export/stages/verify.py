"""Stage: ONNX model -> verification report against PyTorch (same inputs, same dropout mask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from export.source import Source
from export.spec import Tolerances
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.contract import CAM_ACTIVATIONS, CAM_CLASS, CAM_GRADIENTS, EMBEDDING, IMAGE, LOGITS, MC_LOGITS, MC_MASK
from runtime.explain.gradcampp import gradcampp_maps, upsample
from runtime.imageio import IMAGE_SUFFIXES, load_image
from runtime.preprocess import preprocess_batch
from runtime.uncertainty import draw_mc_mask, softmax


@dataclass
class VerifyReport:
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def check(self, name: str, value: float, limit: float, larger_is_better: bool = False) -> None:
        self.figures[name] = {"value": float(value), "limit": limit}
        ok = value >= limit if larger_is_better else value <= limit
        if not ok:
            self.failures.append(f"{name} = {value:.3g} (limit {limit:g})")

    def as_dict(self) -> dict:
        return {"passed": self.passed, "figures": self.figures, "failures": self.failures}


def verify(onnx_path: Path, source: Source, images: Path | None = None, seed: int = 0) -> VerifyReport:
    backend = OnnxRuntimeBackend(onnx_path)
    manifest = backend.manifest
    tolerances = Tolerances(**manifest.tolerances)
    report = VerifyReport()
    if manifest.source_sha256 != source.sha256:
        report.failures.append(f"{onnx_path} was exported from another checkpoint "
                               f"(sha256 {manifest.source_sha256[:12]}… vs {source.sha256[:12]}…)")
    batches = {"random": np.random.default_rng(seed).standard_normal(
        (1, 3, manifest.preprocessing.image_size, manifest.preprocessing.image_size)).astype(np.float32)}
    if images is not None:
        files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:4]
        for file in files:
            batches[file.name] = preprocess_batch([load_image(file)], manifest.preprocessing)
    mask = draw_mc_mask(16, source.model.num_features, manifest.dropout_p, seed)
    for name, batch in batches.items():
        _verify_batch(report, backend, source, batch, mask, tolerances, name)
    report.figures["inputs"] = list(batches)
    return report


def _verify_batch(report, backend, source, batch, mask, tolerances, name):
    model = source.model
    layer = model.get_submodule(backend.manifest.target_layer)
    with torch.no_grad():
        embedding = model.embed(model.forward_features(torch.from_numpy(batch)))
        logits = model.head(embedding).numpy()
    predicted = int(logits[0].argmax())
    feed = {IMAGE: batch, MC_MASK: mask}
    ones = {IMAGE: batch, MC_MASK: np.ones_like(mask[:1])}
    if backend.input(CAM_CLASS) is not None:
        feed[CAM_CLASS] = ones[CAM_CLASS] = np.array([predicted], np.int64)
    out = backend.infer(feed)
    all_keep = backend.infer(ones)
    with torch.no_grad():  # the head alone, on the exported embedding: backbone differences are checked apart
        under_mask = model.head(torch.from_numpy(out[EMBEDDING])[:, None, :] * torch.from_numpy(mask)[None]).numpy()
    activations, gradients = _autograd_reference(model, layer, batch, predicted)
    exported = out[CAM_GRADIENTS][0]
    per_class = exported.shape[0] > 1
    reference_gradients = gradients if per_class else gradients[[predicted]]
    scale = np.abs(reference_gradients).max() + 1e-30
    report.check(f"{name}.logits_abs", np.abs(out[LOGITS] - logits).max(), tolerances.logits_abs)
    report.check(f"{name}.probabilities_abs", np.abs(softmax(out[LOGITS]) - softmax(logits)).max(),
                 tolerances.probabilities_abs)
    report.check(f"{name}.all_keep_mask_vs_logits_abs", np.abs(all_keep[MC_LOGITS][:, 0] - all_keep[LOGITS]).max(),
                 tolerances.logits_abs)
    report.check(f"{name}.head_under_mask_abs", np.abs(out[MC_LOGITS] - under_mask).max(),
                 tolerances.head_under_mask_abs)
    report.check(f"{name}.embedding_abs", np.abs(out[EMBEDDING] - embedding.numpy()).max(), tolerances.embedding_abs)
    report.check(f"{name}.activations_abs", np.abs(out[CAM_ACTIVATIONS][0] - activations).max(),
                 tolerances.activations_abs)
    difference = np.abs(np.broadcast_to(exported, reference_gradients.shape) - reference_gradients).max()
    report.check(f"{name}.gradients_rel", difference / scale, tolerances.gradients_rel)
    ours = gradcampp_maps(out[CAM_ACTIVATIONS][0], exported[[predicted]] if per_class else exported)
    size = batch.shape[-1]
    ours_map = upsample(ours[0], size, size)
    reference_map = pytorch_grad_cam_map(model, layer, batch, predicted)
    figure, value, limit, larger_is_better = map_agreement(ours_map, reference_map, tolerances)
    report.check(f"{name}.{figure}", value, limit, larger_is_better=larger_is_better)


def map_agreement(ours: np.ndarray, reference: np.ndarray, tolerances: Tolerances) -> tuple[str, float, float, bool]:
    """Pearson correlation of two GradCAM++ maps; where either is constant (no positive evidence at the layer,
    so the correlation is undefined), their largest absolute difference instead."""
    if np.ptp(ours) == 0 or np.ptp(reference) == 0:
        return "gradcampp_constant_abs", float(np.abs(ours - reference).max()), tolerances.activations_abs, False
    return "gradcampp_pearson", float(np.corrcoef(ours.ravel(), reference.ravel())[0, 1]), tolerances.cam_pearson, True


def _autograd_reference(model, layer, batch, predicted):
    """Target-layer activations and d logit_c / d activations for every class c, by torch autograd."""
    captured = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.setdefault("a", output))
    try:
        image = torch.from_numpy(batch).requires_grad_(True)
        logits = model(image)
        gradients = [torch.autograd.grad(logits[0, c], captured["a"], retain_graph=True)[0][0]
                     for c in range(logits.shape[1])]
    finally:
        handle.remove()
    return captured["a"][0].detach().numpy(), torch.stack(gradients).numpy()


def pytorch_grad_cam_map(model, layer, batch, target_class) -> np.ndarray:
    """The independent reference: pytorch-grad-cam's GradCAMPlusPlus on the raw class logit."""
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAMPlusPlus(model=model, target_layers=[layer]) as cam:
        tensor = torch.from_numpy(batch).requires_grad_(True)
        return cam(input_tensor=tensor, targets=[ClassifierOutputTarget(target_class)])[0]
