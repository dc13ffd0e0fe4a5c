"""On a CUDA GPU, in PyTorch: our one-pass graph (the graph `mnet-export` writes, run by `TorchGraphBackend`)
against the reference eager pipeline, same weights, same run. Skipped without CUDA.

    make bench-cuda     # MNET_CUDA_ARCHS / MNET_CUDA_SIZES choose the models (default b0, s, m at 224 and 384)

MNET_TORCH_DEVICE=cpu runs the same comparison on the CPU (a quick check of this file without a GPU).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from benchmarks.conftest import SAMPLE_IMAGE, record
from benchmarks.reference import ReferencePipeline
from runtime.contract import CAM_ACTIVATIONS, CAM_GRADIENTS, IMAGE, LOGITS, MC_MASK
from runtime.explain.gradcampp import gradcampp_maps, upsample_all
from runtime.imageio import load_image
from runtime.predictor import Predictor
from runtime.preprocess import preprocess
from runtime.uncertainty import draw_mc_mask

DEVICE = torch.device(os.environ.get("MNET_TORCH_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA GPU (PyTorch built with CUDA); MNET_TORCH_DEVICE=cpu runs it on the CPU")
ARCHS = os.environ.get("MNET_CUDA_ARCHS", "tf_efficientnetv2_b0,tf_efficientnetv2_s,tf_efficientnetv2_m").split(",")
SIZES = [int(s) for s in os.environ.get("MNET_CUDA_SIZES", "224,384").split(",")]
BATCH = 32
WARMUP = 2


@pytest.fixture(scope="module", params=[(a, s) for a in ARCHS for s in SIZES], ids=lambda p: f"{p[0]}@{p[1]}")
def cuda_setup(request, tmp_path_factory):
    from benchmarks.torch_backend import TorchGraphBackend, random_source

    architecture, size = request.param
    source = random_source(architecture, size, tmp_path_factory.mktemp(f"cuda-{architecture}-{size}"))
    backends = {"ours": TorchGraphBackend(source, size, str(DEVICE))}
    if DEVICE.type == "cuda":
        backends["ours-fp16"] = TorchGraphBackend(source, size, str(DEVICE), half=True)
    reference = ReferencePipeline(source.model, source.model.target_layer, size)
    yield {"key": f"{architecture}@{size}", "size": size, "checkpoint": source.path, "backends": backends,
           "reference": reference, "features": source.model.num_features}
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def timed(benchmark, function, *args, rounds: int | None = None):
    """Warm up (cuDNN algorithm choice, lazy initialisation), then time with the GPU drained each call."""

    def synchronised():
        value = function(*args)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return value

    for _ in range(WARMUP):
        synchronised()
    if rounds is None:
        return benchmark(synchronised)
    return benchmark.pedantic(synchronised, rounds=rounds, iterations=1)


def _backend(setup, side: str):
    if side not in setup["backends"]:
        pytest.skip(f"{side}: float16 autocast is timed on CUDA only")
    return setup["backends"][side]


def _feed(setup, samples: int, batch: int = 1) -> dict:
    spec = setup["backends"]["ours"].manifest.preprocessing
    image = preprocess(load_image(SAMPLE_IMAGE), spec)
    return {IMAGE: np.repeat(image[None], batch, axis=0),
            MC_MASK: draw_mc_mask(samples, setup["features"], 0.3, 0)}


@pytest.mark.parametrize("side", ["ours", "ours-fp16", "reference"])
def test_cuda_forward(benchmark, cuda_setup, side):
    record(benchmark, f"{DEVICE.type} forward {cuda_setup['key']}", side)
    if side == "reference":
        reference = cuda_setup["reference"]
        timed(benchmark, reference.forward, reference.preprocess(SAMPLE_IMAGE))
    else:
        timed(benchmark, _backend(cuda_setup, side).infer, _feed(cuda_setup, 1))


@pytest.mark.parametrize("samples", [10, 30, 100])
@pytest.mark.parametrize("side", ["ours", "reference"])
def test_cuda_mc(benchmark, cuda_setup, side, samples):
    record(benchmark, f"{DEVICE.type} mc T={samples} {cuda_setup['key']}", side)
    if side == "reference":
        reference = cuda_setup["reference"]
        timed(benchmark, reference.mc_dropout, reference.preprocess(SAMPLE_IMAGE), samples, rounds=5)
    else:
        timed(benchmark, _backend(cuda_setup, side).infer, _feed(cuda_setup, samples))


@pytest.mark.parametrize("side", ["ours", "ours-fp16", "reference"])
def test_cuda_explain_all_classes(benchmark, cuda_setup, side):
    """Probabilities, T=30 MC and GradCAM++ maps of all 9 classes at the input size."""
    record(benchmark, f"{DEVICE.type} probabilities + MC T=30 + GradCAM++ x9 {cuda_setup['key']}", side)
    size = cuda_setup["size"]
    if side == "reference":
        reference = cuda_setup["reference"]
        tensor = reference.preprocess(SAMPLE_IMAGE)

        def explain():
            reference.forward(tensor)
            reference.mc_dropout(tensor, 30)
            return [reference.gradcampp(tensor, c) for c in range(9)]

        timed(benchmark, explain, rounds=5)
        return
    backend, feed = _backend(cuda_setup, side), _feed(cuda_setup, 30)

    def explain():
        outputs = backend.infer(feed)
        return upsample_all(gradcampp_maps(outputs[CAM_ACTIVATIONS][0], outputs[CAM_GRADIENTS][0]), size, size)

    timed(benchmark, explain)


@pytest.mark.parametrize("side", ["ours", "ours-fp16", "reference"])
def test_cuda_batch(benchmark, cuda_setup, side):
    """A batch of 32 images: probabilities, T=30 MC, GradCAM++ of each image's predicted class."""
    record(benchmark, f"{DEVICE.type} batch {BATCH}: probabilities + MC T=30 + GradCAM++ {cuda_setup['key']}", side)
    feed = _feed(cuda_setup, 30, BATCH)
    if side == "reference":
        reference = cuda_setup["reference"]
        tensor = torch.from_numpy(feed[IMAGE]).to(DEVICE)

        def explain():
            predicted = reference.forward(tensor).argmax(1).tolist()
            reference.mc_dropout(tensor, 30)
            return reference.gradcampp_batch(tensor, predicted)

        timed(benchmark, explain, rounds=3)
        return
    backend = _backend(cuda_setup, side)

    def explain():
        outputs = backend.infer(feed)
        predicted = outputs[LOGITS].argmax(1)
        gradients = outputs[CAM_GRADIENTS][0]
        return [gradcampp_maps(outputs[CAM_ACTIVATIONS][i], gradients[predicted[i]:predicted[i] + 1])
                for i in range(BATCH)]

    timed(benchmark, explain)


@pytest.mark.parametrize("abcde", [True, False], ids=["with-abcd", "no-abcd"])
@pytest.mark.parametrize("side", ["ours", "ours-fp16", "reference"])
def test_cuda_end_to_end(benchmark, cuda_setup, side, abcde):
    """From the image file to the JSON report: probabilities, T=10 MC, GradCAM++ (and ABCD on the CPU)."""
    record(benchmark, f"{DEVICE.type} end to end {'with' if abcde else 'without'} ABCD {cuda_setup['key']}", side)
    if side == "reference":
        timed(benchmark, cuda_setup["reference"].explain, SAMPLE_IMAGE, abcde, rounds=5)
        return
    predictor = Predictor(cuda_setup["checkpoint"], backend=_backend(cuda_setup, side), mc_samples=10,
                          abcde=abcde)
    timed(benchmark, lambda: json.dumps(predictor.predict(SAMPLE_IMAGE).to_dict()))
