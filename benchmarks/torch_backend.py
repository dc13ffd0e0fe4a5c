"""The one-pass graph that `mnet-export` writes to ONNX, run eagerly in PyTorch behind the runtime's backend
interface: our design measured on CUDA where no CUDA build of ONNX Runtime or TensorRT is at hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from export.source import Source, load_source
from export.wrappers import LastLayerGraph
from runtime.backends.base import Backend, TensorSpec
from runtime.contract import IMAGE, MC_MASK, OUTPUTS


class TorchGraphBackend(Backend):
    """`LastLayerGraph` on `device`; `half=True` runs it under float16 autocast (what a TensorRT FP16 engine
    would compute), outputs always come back as float32 numpy arrays."""

    def __init__(self, source: Source, image_size: int, device: str = "cuda", half: bool = False):
        self.path = str(source.path)
        self.name = f"torch-{device}" + ("-fp16" if half else "")
        self.manifest = source.manifest.with_updates(
            preprocessing=replace(source.manifest.preprocessing, image_size=image_size))
        self.device = torch.device(device)
        self.half = half
        self.graph = LastLayerGraph(source.model).to(self.device).eval()
        features = source.model.num_features
        self.inputs = (TensorSpec(IMAGE, np.dtype(np.float32), (None, 3, image_size, image_size)),
                       TensorSpec(MC_MASK, np.dtype(np.float32), (None, features)))
        self.outputs = tuple(TensorSpec(name, np.dtype(np.float32), ()) for name in OUTPUTS)

    @torch.inference_mode()
    def _run(self, feed):
        image = torch.from_numpy(feed[IMAGE]).to(self.device, non_blocking=True)
        mask = torch.from_numpy(feed[MC_MASK]).to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            values = self.graph(image, mask)
        return {name: value.float().cpu().numpy() for name, value in zip(OUTPUTS, values)}


def random_source(architecture: str, size: int, folder: Path) -> Source:
    """A model of `architecture` with seeded random weights (latency does not depend on them), saved as a checkpoint
    in `folder` and loaded back as `mnet-export` would."""
    from melanomanet.checkpoint import make_manifest, save_checkpoint
    from melanomanet.model import build_model

    torch.manual_seed(0)
    model = build_model(architecture)
    checkpoint = folder / "random.safetensors"
    save_checkpoint(checkpoint, model, make_manifest(model, size, "random weights (benchmark)"))
    return load_source(checkpoint)
