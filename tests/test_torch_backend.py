"""The benchmark's PyTorch backend runs the exported one-pass graph: same results as the ONNX bundle."""

import numpy as np
import pytest
import torch

from benchmarks.torch_backend import TorchGraphBackend
from export.source import load_source
from runtime.predictor import Predictor
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow


def _compare(bundle, checkpoint, device: str, half: bool, atol: float):
    backend = TorchGraphBackend(load_source(checkpoint), 224, device=device, half=half)
    reference = Predictor(bundle, mc_samples=20, seed=3)
    ours = Predictor(checkpoint, backend=backend, mc_samples=20, seed=3)
    for path in sorted(SAMPLES.glob("*.jpg"))[:3]:
        expected, got = reference.predict(path), ours.predict(path)
        assert got.label == expected.label
        np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=atol)
        np.testing.assert_allclose(got.uncertainty.mean_probabilities, expected.uncertainty.mean_probabilities,
                                   atol=atol)
        assert np.corrcoef(got.heatmap.ravel(), expected.heatmap.ravel())[0, 1] > 0.99
        assert got.abcde == expected.abcde
        assert got.model["backend"] == f"torch-{device}" + ("-fp16" if half else "")


def test_cpu_graph_equals_the_onnx_bundle(bundle, checkpoint):
    _compare(bundle, checkpoint, "cpu", half=False, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (PyTorch built with CUDA)")
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_cuda_graph_equals_the_onnx_bundle(bundle, checkpoint, half):
    _compare(bundle, checkpoint, "cuda", half=half, atol=2e-2 if half else 1e-3)


def test_the_gpu_pipeline_benchmark_runs_on_the_cpu():
    """`benchmarks.pipeline` (scripts/gpu_check.sh's step for issue 17's pipeline on a GPU) works before a lent GPU
    machine's minutes are spent on it, and its pipelined reports equal the sequential ones."""
    from benchmarks.pipeline import pipeline_figures

    figures = pipeline_figures("tf_efficientnetv2_b0@64", "cpu", SAMPLES, 4, [2], mc_samples=3)
    assert set(figures["images_per_s"]) == {"1", "2"} and figures["over_sequential"]["1"] == 1.0
    assert figures["pipelined_against_sequential"] == {"2": {"reports": 4, "identical": 4,
                                                             "max_probability_difference": 0.0}}
