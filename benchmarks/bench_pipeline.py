"""Per-stage and end-to-end latency: our one-pass design against the reference eager pipeline, same
weights, same run. `make bench`; ratios close the report and land in .benchmarks/ratios.json."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from benchmarks.conftest import INTERMEDIATE_LAYER, SAMPLE_IMAGE, record
from benchmarks.reference import ReferencePipeline
from runtime.abcde.analyze import analyze
from runtime.abcde.features import measure_features
from runtime.abcde.segment import segment, working_image
from runtime.abcde.segmenter import lesion_probability
from runtime.app.batch import write_outputs
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.contract import CAM_ACTIVATIONS, CAM_CLASS, CAM_GRADIENTS, IMAGE, MC_MASK
from runtime.explain.gradcampp import gradcampp_maps, upsample, upsample_all
from runtime.imageio import load_image
from runtime.manifest import Preprocessing
from runtime.png import encode_png
from runtime.predictor import Predictor
from runtime.preprocess import preprocess
from runtime.report.panel import render_panel
from runtime.uncertainty import draw_mc_mask


def _feed(setup, samples: int) -> tuple[OnnxRuntimeBackend, dict]:
    backend = OnnxRuntimeBackend(setup["bundle"])
    tensor = preprocess(load_image(SAMPLE_IMAGE), backend.manifest.preprocessing)[None]
    return backend, {IMAGE: tensor, MC_MASK: draw_mc_mask(samples, setup["model"].num_features, 0.3, 0)}


def _reference(setup, samples: int = 10) -> ReferencePipeline:
    return ReferencePipeline(setup["model"], setup["model"].target_layer, setup["size"], samples)


def test_preprocess_ours(benchmark, setup):
    record(benchmark, f"preprocess {setup['key']}", "ours")
    spec = OnnxRuntimeBackend(setup["bundle"]).manifest.preprocessing
    benchmark(lambda: preprocess(load_image(SAMPLE_IMAGE), spec))


def test_preprocess_reference(benchmark, setup):
    record(benchmark, f"preprocess {setup['key']}", "reference")
    benchmark(_reference(setup).preprocess, SAMPLE_IMAGE)


@pytest.mark.parametrize("size", [224, 384])
def test_preprocess_pillow_exact_ours(benchmark, size):
    """What `--from-seed` bundles need: Pillow's BILINEAR resize (bit-exact) and normalisation, from the decoded
    600x450 image (decoding is the same for every path and timed in the groups above)."""
    record(benchmark, f"preprocess, Pillow-exact, decoded 600x450 -> {size}", "ours")
    image, spec = load_image(SAMPLE_IMAGE), Preprocessing(image_size=size, interpolation="bilinear_antialias")
    benchmark(preprocess, image, spec)


def test_forward_ours(benchmark, setup):
    record(benchmark, f"forward {setup['key']}", "ours")
    backend, feed = _feed(setup, 1)
    benchmark(backend.infer, feed)


def test_forward_reference(benchmark, setup):
    record(benchmark, f"forward {setup['key']}", "reference")
    reference = _reference(setup)
    benchmark(reference.forward, reference.preprocess(SAMPLE_IMAGE))


@pytest.mark.parametrize("samples", [1, 10, 30, 100])
def test_mc_ours(benchmark, setup, samples):
    record(benchmark, f"mc T={samples} {setup['key']}", "ours")
    backend, feed = _feed(setup, samples)
    benchmark(backend.infer, feed)


@pytest.mark.parametrize("samples", [1, 10, 30, 100])
def test_mc_reference(benchmark, setup, samples):
    if samples == 100 and setup["arch"] != "tf_efficientnetv2_b0":
        pytest.skip("T=100 full passes of the larger backbone: measured for b0 only to bound the run")
    record(benchmark, f"mc T={samples} {setup['key']}", "reference")
    reference = _reference(setup)
    tensor = reference.preprocess(SAMPLE_IMAGE)
    benchmark.pedantic(reference.mc_dropout, args=(tensor, samples), rounds=3, iterations=1)


def test_gradcampp_all_classes_ours(benchmark, setup):
    """From the one inference's outputs: GradCAM++ maps for all 9 classes, upsampled to the input size
    as pytorch-grad-cam's are (the runtime upsamples only the displayed class to the photograph)."""
    record(benchmark, f"gradcampp last, all classes {setup['key']}", "ours")
    backend, feed = _feed(setup, 30)
    outputs = backend.infer(feed)
    size = setup["size"]

    def maps():
        return upsample_all(gradcampp_maps(outputs[CAM_ACTIVATIONS][0], outputs[CAM_GRADIENTS][0]), size, size)

    benchmark(maps)


def test_gradcampp_all_classes_reference(benchmark, setup):
    record(benchmark, f"gradcampp last, all classes {setup['key']}", "reference")
    reference = _reference(setup)
    tensor = reference.preprocess(SAMPLE_IMAGE)
    benchmark.pedantic(lambda: [reference.gradcampp(tensor, c) for c in range(9)], rounds=3, iterations=1)


@pytest.fixture(scope="module")
def intermediate_bundle(setup):
    from export.spec import ExportSpec
    from export.stages.onnx import to_onnx

    if setup["arch"] != "tf_efficientnetv2_b0":
        pytest.skip("intermediate-layer export timed for b0 (its export traces the backward pass)")
    return to_onnx(setup["source"], ExportSpec(image_size=setup["size"], cam_layer=INTERMEDIATE_LAYER),
                   setup["folder"] / "intermediate.onnx")


def test_gradcampp_intermediate_ours(benchmark, setup, intermediate_bundle):
    """Inference of the intermediate-layer bundle (forward + in-graph backward) and the map."""
    record(benchmark, f"gradcampp {INTERMEDIATE_LAYER}, one class {setup['key']}", "ours")
    backend = OnnxRuntimeBackend(intermediate_bundle)
    _, feed = _feed(setup, 10)
    feed[CAM_CLASS] = np.array([0], np.int64)

    def explain():
        outputs = backend.infer(feed)
        return upsample(gradcampp_maps(outputs[CAM_ACTIVATIONS][0], outputs[CAM_GRADIENTS][0])[0], 600, 450)

    benchmark(explain)


def test_gradcampp_intermediate_reference(benchmark, setup, intermediate_bundle):
    record(benchmark, f"gradcampp {INTERMEDIATE_LAYER}, one class {setup['key']}", "reference")
    reference = _reference(setup)
    tensor = reference.preprocess(SAMPLE_IMAGE)
    layer = setup["model"].get_submodule(INTERMEDIATE_LAYER)
    benchmark.pedantic(lambda: reference.gradcampp(tensor, 0, layer), rounds=5, iterations=1)


def test_abcde_ours(benchmark, one_thread):
    record(benchmark, "abcde A-D 600x450, one core", "ours")
    image = load_image(SAMPLE_IMAGE)
    benchmark(analyze, image)


def test_abcde_reference(benchmark, one_thread):
    record(benchmark, "abcde A-D 600x450, one core", "reference")
    image = load_image(SAMPLE_IMAGE)
    benchmark.pedantic(ReferencePipeline.abcde, args=(image,), rounds=3, iterations=1)


@pytest.mark.parametrize("stage", ["segmenter network", "outline", "features"])
def test_abcde_stages_ours(benchmark, one_thread, stage):
    """Where an analysis's time goes: the dermoscopy segmenter's pass, the whole outline (its pass, the edge cut at
    full resolution, the quality check) and the features the fitted readings take."""
    record(benchmark, "abcde stages 600x450, one core", stage)
    image = load_image(SAMPLE_IMAGE)
    found = segment(image)
    small = working_image(image)
    work = {"segmenter network": lambda: lesion_probability(small),
            "outline": lambda: segment(image),
            "features": lambda: measure_features(image, found.mask, found)}[stage]
    benchmark(work)


def test_report_writing_ours(benchmark, setup, tmp_path):
    """What the batch writes per image: the panel drawn and encoded, the heatmap PNG, the report JSON."""
    record(benchmark, f"report JSON + PNG panel {setup['key']}", "ours")
    result = Predictor(setup["bundle"], mc_samples=10).predict(SAMPLE_IMAGE)
    benchmark(write_outputs, result, tmp_path, "r")


@pytest.fixture(scope="module")
def panel(setup) -> np.ndarray:
    return render_panel(Predictor(setup["bundle"], mc_samples=10).predict(SAMPLE_IMAGE))


def test_png_panel_ours(benchmark, panel):
    """The panel PNG as the batch writes it (runtime.png: Up filter, ISA-L deflate)."""
    record(benchmark, "PNG encoding of the panel", "ours")
    benchmark(encode_png, panel)


def test_png_panel_reference(benchmark, panel):
    """OpenCV's (libpng) encoder at its defaults, what the batch used before."""
    record(benchmark, "PNG encoding of the panel", "reference")
    converted = cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)
    benchmark(cv2.imencode, ".png", converted)


def test_end_to_end_ours(benchmark, setup):
    """Probabilities, T=10 MC, GradCAM++, ABCDE and the JSON report, from the image file."""
    record(benchmark, f"end to end {setup['key']}", "ours")
    predictor = Predictor(setup["bundle"], mc_samples=10)
    benchmark(lambda: json.dumps(predictor.predict(SAMPLE_IMAGE).to_dict()))


def test_end_to_end_reference(benchmark, setup):
    record(benchmark, f"end to end {setup['key']}", "reference")
    reference = _reference(setup)
    benchmark.pedantic(reference.explain, args=(SAMPLE_IMAGE,), rounds=3, iterations=1)


@pytest.fixture
def one_thread():
    previous_cv, previous_torch = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    yield
    cv2.setNumThreads(previous_cv)
    torch.set_num_threads(previous_torch)
