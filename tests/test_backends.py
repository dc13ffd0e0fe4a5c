"""Logic around the backends and the engine builder that needs no TensorRT library."""

import importlib.util
import json

import numpy as np
import pytest

from export.stages.tensorrt import EngineSpec, check_precision, parse_range
from runtime.backends.base import Backend, TensorSpec
from runtime.backends.tensorrt import rebuild_command, sidecar_mismatch
from runtime.errors import BackendError, ConfigError, ManifestError
from runtime.manifest import Manifest, Preprocessing, read_sidecar, write_sidecar
from tests.conftest import SAMPLES

FACTS = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
         "precision": "fp16"}


def test_engine_matching_its_machine_is_accepted():
    assert sidecar_mismatch(FACTS, "10.3.0", {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}) is None


def test_engine_from_another_gpu_or_version_is_refused_with_reasons():
    reason = sidecar_mismatch(FACTS, "10.7.0", {"gpu": "Orin", "compute_capability": "8.7"})
    assert "TensorRT 10.3.0" in reason and "10.7.0" in reason and "Orin" in reason and "8.7" in reason


def test_rebuild_command_keeps_the_precision(tmp_path):
    assert rebuild_command(tmp_path / "model.engine", FACTS) == "mnet-export trt model.onnx -o model.engine --fp16"
    assert rebuild_command("m.engine", {"precision": "fp32"}) == "mnet-export trt m.onnx -o m.engine"


@pytest.mark.parametrize("text,expected", [("1:4:8", (1, 4, 8)), ("2", (2, 2, 2))])
def test_profile_ranges(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["8:4:1", "0:1:2", "1:2", "a:b:c"])
def test_bad_profile_ranges_are_refused(text):
    with pytest.raises(ConfigError, match="MIN:OPT:MAX"):
        parse_range(text)


def test_int8_engines_build_only_from_a_qdq_bundle_made_for_tensorrt():
    assert EngineSpec(int8=True).precision == "int8" and EngineSpec(fp16=True).precision == "fp16"
    fp32 = Manifest(architecture="a", preprocessing=Preprocessing(image_size=64))
    with pytest.raises(ConfigError, match="mnet-export quantize model.onnx --precision int8 --target tensorrt"):
        check_precision("model.onnx", fp32, EngineSpec(int8=True))
    for_ort = fp32.with_updates(precision="int8", quantization={"target": "ort"})
    with pytest.raises(ConfigError, match="symmetric"):
        check_precision("model.onnx", for_ort, EngineSpec(int8=True))
    with pytest.raises(ConfigError, match="builds with --int8"):
        check_precision("model.onnx", for_ort.with_updates(quantization={"target": "tensorrt"}), EngineSpec())
    check_precision("model.onnx", for_ort.with_updates(quantization={"target": "tensorrt"}), EngineSpec(int8=True))
    check_precision("model.onnx", fp32, EngineSpec(fp16=True))


def test_sidecar_round_trip_and_tamper_detection(tmp_path):
    artifact = tmp_path / "model.engine"
    artifact.write_bytes(b"engine bytes")
    manifest = Manifest(architecture="tf_efficientnetv2_b0", preprocessing=Preprocessing(image_size=384))
    write_sidecar(artifact, manifest, **FACTS)
    loaded, facts = read_sidecar(artifact)
    assert loaded == manifest and facts["gpu"] == FACTS["gpu"]
    artifact.write_bytes(b"another engine")
    with pytest.raises(ManifestError, match="does not match the sidecar"):
        read_sidecar(artifact)
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(ManifestError, match="no sidecar"):
        read_sidecar(artifact)
    assert json.loads(Manifest.to_json(manifest))["schema"] == 3


class Echo(Backend):
    path = "echo.onnx"
    inputs = (TensorSpec("image", np.dtype(np.float32), (None, 3, 8, 8)),)
    outputs = (TensorSpec("out", np.dtype(np.float32), (None,)),)

    def _run(self, feed):
        return {"out": feed["image"].sum(axis=(1, 2, 3))}


@pytest.mark.parametrize("feed,message", [
    ({"picture": np.zeros((1, 3, 8, 8), np.float32)}, "inputs"),
    ({"image": np.zeros((1, 3, 8, 8), np.float64)}, "float64"),
    ({"image": np.zeros((1, 3, 9, 8), np.float32)}, r"\(\?, 3, 8, 8\)"),
])
def test_feeds_are_checked_in_one_place(feed, message):
    with pytest.raises(BackendError, match=message):
        Echo().infer(feed)


def test_a_valid_feed_runs():
    assert Echo().infer({"image": np.ones((2, 3, 8, 8), np.float32)})["out"].tolist() == [192.0, 192.0]


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed on this machine")
def test_real_engine_agrees_with_onnxruntime(bundle, tmp_path):
    """Runs where TensorRT and a GPU exist (make test-gpu): FP32 engine vs ONNX Runtime CPU."""
    from export.stages.tensorrt import build_engine
    from runtime.backends.onnxruntime import OnnxRuntimeBackend
    from runtime.predictor import Predictor

    manifest = OnnxRuntimeBackend(bundle).manifest
    engine = build_engine(bundle, manifest, EngineSpec(), tmp_path / "model.engine")
    reference = Predictor(bundle, abcde=False)
    ours = Predictor(engine, backend="tensorrt", abcde=False)
    for path in sorted(SAMPLES.glob("*.jpg")):
        expected, got = reference.predict(path), ours.predict(path)
        assert got.label == expected.label
        np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-3)
