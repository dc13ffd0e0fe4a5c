"""The precision table (docs/precision.md): an explained prediction (T=10, GradCAM++, ABCD, the JSON report) from
the image file, in ONNX Runtime FP32 and INT8, OpenVINO FP32, BF16 and INT8, against the reference pipeline in
the same run, for EfficientNetV2-S at 384 px and B0 at 224 px. Latency does not depend on the weights (random
here); fidelity does, so each row carries the fidelity measured on the shipped real model by
studies/precision_fidelity.py (docs/precision/fidelity.json), never one measured on these random weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks.bench_pipeline import _reference
from benchmarks.conftest import SAMPLE_IMAGE, SAMPLES, record
from runtime.predictor import Predictor

KEYS = ("tf_efficientnetv2_s@384", "tf_efficientnetv2_b0@224")
ROOT = Path(__file__).resolve().parents[1]
FIDELITY = ROOT / "docs" / "precision" / "fidelity.json"
HAM10000 = ROOT.parent / "shared" / "data" / "real" / "ham10000"
CALIBRATION_IMAGES = 100
# side -> (bundle variant, backend, the real model's fidelity row in FIDELITY)
SIDES = {
    "ours": ("fp32", "ort-cpu", None),
    "ort-int8": ("int8-all", "ort-cpu", "int8 (ort, all layers INT8)"),
    "ort-int8-sensitivity": ("int8-sensitivity", "ort-cpu", "int8 (ort, sensitivity pass)"),
    "openvino-fp32": ("fp32", "openvino", None),
    "openvino-bf16": ("fp32", "openvino-bf16", "bf16 (openvino hint on the FP32 bundle)"),
    "openvino-int8": ("int8-all", "openvino", "int8 (openvino, all layers INT8)"),
}
needs_openvino = importlib.util.find_spec("openvino") is None


def _real_fidelity() -> dict:
    return json.loads(FIDELITY.read_text()) if FIDELITY.exists() else {}


@pytest.fixture(scope="session")
def variants(setup):
    """The setup's FP32 bundle and its INT8 versions: every layer INT8, and with the layer groups kept FP32 that
    the sensitivity pass kept for the real model."""
    if setup["key"] not in KEYS:
        pytest.skip("the precision table covers S@384 and B0@224")
    from export.fidelity import calibration_images
    from export.spec import FidelityTargets
    from export.stages.quantize import QuantizeSpec, to_int8, write_bundle
    from runtime.backends import open_backend

    bundle = setup["bundle"]
    manifest = open_backend(bundle).manifest
    calibration = calibration_images(HAM10000 if HAM10000.is_dir() else SAMPLES, manifest, CALIBRATION_IMAGES, 0)
    kept = _real_fidelity().get("int8 (ort, sensitivity pass)", {}).get("record", {}).get("fp32_groups", [])
    made = {"fp32": bundle}
    for name, groups in (("int8-all", ()), ("int8-sensitivity", tuple(kept))):
        spec = QuantizeSpec("int8", methods=("minmax",), calib_images=CALIBRATION_IMAGES, keep_fp32=groups,
                            sensitivity=False)
        model, quantization = to_int8(bundle, calibration, spec, FidelityTargets(), log=lambda line: None)
        made[name] = write_bundle(model, manifest.with_updates(precision="int8", quantization=quantization),
                                  setup["folder"] / f"{name}.onnx")
    return made


@pytest.mark.parametrize("side", list(SIDES))
def test_precision_explained(benchmark, setup, variants, side):
    variant, backend, fidelity_row = SIDES[side]
    if backend.startswith("openvino") and needs_openvino:
        pytest.skip("OpenVINO is not installed (the `openvino` extra)")
    record(benchmark, f"precision {setup['key']}", side)
    figures = _real_fidelity().get(fidelity_row, {}).get("figures") if fidelity_row else None
    benchmark.extra_info["fidelity_on_the_real_model"] = None if figures is None else {
        "top1_agreement": figures["top1_agreement"], "referral_agreement": figures["referral_agreement"],
        "gradcampp_pearson_median": figures["gradcampp_pearson"]["median"], "passed": figures["passed"]}
    predictor = Predictor(variants[variant], backend=backend, mc_samples=10)
    benchmark(lambda: json.dumps(predictor.predict(SAMPLE_IMAGE).to_dict()))


def test_precision_reference(benchmark, setup, variants):
    record(benchmark, f"precision {setup['key']}", "reference")
    reference = _reference(setup)
    benchmark.pedantic(reference.explain, args=(SAMPLE_IMAGE,), rounds=3, iterations=1)
