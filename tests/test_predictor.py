"""The Predictor (runtime/predictor.py) as one execution path: the same image gives the same report through
`predict`, `predict_batch` and `mnet run`'s batch, with ABCD beside the network in each; per-call options are
checked where they are made; threads may share a predictor; an inner-layer bundle and an injected backend go
through it like any other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import cv2
import numpy as np
import pytest

from runtime.errors import ConfigError, ManifestError
from runtime.options import ImageOptions
from runtime.predictor import Predictor
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow
SAMPLE_FILES = sorted(SAMPLES.glob("*.jpg"))


def without_timings(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "timings_ms"}


def test_predict_predict_batch_and_the_batch_runner_give_one_report(bundle, tmp_path):
    import json

    from runtime.app.batch import run_batch

    predictor = Predictor(bundle, mc_samples=5)
    run_batch(predictor, SAMPLE_FILES, tmp_path, workers=2)
    batched = predictor.predict_batch(SAMPLE_FILES)
    for path, in_batch in zip(SAMPLE_FILES, batched):
        alone = predictor.predict(path).to_dict()
        written = json.loads((tmp_path / f"{path.stem}.json").read_text())
        written["gradcampp"]["heatmap"] = None  # the one difference: only a written report has a heatmap file
        assert without_timings(alone) == without_timings(in_batch.to_dict()) == without_timings(written)
        for timings in (alone["timings_ms"], written["timings_ms"]):
            stages = sum(value for stage, value in timings.items() if stage != "total")
            overlap = min(timings["inference"], timings["abcde"])
            assert stages - overlap - 0.01 <= timings["total"] < stages, "ABCD runs beside the network everywhere"


@pytest.mark.parametrize("call, message", [
    (lambda p: p.predict(SAMPLE_FILES[0], mm_per_px=-0.05), "not a positive number"),
    (lambda p: p.predict(SAMPLE_FILES[0], lesion_at=(-1.0, 5.0)), "0 or more"),
    (lambda p: p.predict(SAMPLE_FILES[0], cam_class="melanoma"), "unknown class 'melanoma'"),
    (lambda p: p.predict_batch(SAMPLE_FILES[:1], options=[ImageOptions(mm_per_px=float("nan"))]), "positive"),
])
def test_per_call_values_are_checked_like_command_line_ones(bundle, call, message):
    with pytest.raises(ConfigError, match=message):
        call(Predictor(bundle, mc_samples=2))


def test_analyze_refuses_a_negative_scale_instead_of_negative_millimetres():
    from runtime.abcde.analyze import analyze

    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE_FILES[0])), cv2.COLOR_BGR2RGB)
    with pytest.raises(ConfigError, match="mm_per_px -0.05 is not a positive number"):
        analyze(rgb, mm_per_px=-0.05)
    assert analyze(rgb, mm_per_px=0.05)["diameter"]["feret_mm"] > 0


@pytest.mark.parametrize("keyword, value", [("seed", -1), ("mc_samples", 0), ("mm_per_px", 0.0),
                                            ("lesion_at", (1.0, float("inf")))])
def test_predictor_defaults_are_checked(bundle, keyword, value):
    with pytest.raises(ConfigError):
        Predictor(bundle, **{keyword: value})


def test_threads_sharing_a_predictor_get_the_sequential_results(bundle):
    predictor = Predictor(bundle, mc_samples=5)
    sequential = [without_timings(predictor.predict(path).to_dict()) for path in SAMPLE_FILES * 2]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda path: without_timings(predictor.predict(path).to_dict()),
                                 SAMPLE_FILES * 2))
    assert together == sequential


def test_an_inner_layer_bundle_runs_through_the_predictor(checkpoint, bundle, tmp_path):
    """A bundle differentiating an inner block (one class per pass) gives the last-layer bundle's probabilities
    and explains the class asked for."""
    from export.source import load_source
    from export.spec import ExportSpec
    from export.stages.onnx import to_onnx

    inner = Predictor(to_onnx(load_source(checkpoint), ExportSpec(image_size=224, cam_layer="backbone.blocks.4"),
                              tmp_path / "inner.onnx"), mc_samples=3)
    last = Predictor(bundle, mc_samples=3)
    for path in SAMPLE_FILES[:2]:
        found, expected = inner.predict(path), last.predict(path)
        assert np.abs(found.probabilities - expected.probabilities).max() <= 1e-4
        assert found.label == expected.label and found.cam_class == expected.cam_class
        asked = inner.predict(path, cam_class="BCC")
        assert asked.class_names[asked.cam_class] == "BCC" and asked.heatmap.shape == found.heatmap.shape


def test_an_injected_backend_is_checked_like_an_opened_one(bundle):
    from runtime.backends import open_backend
    from runtime.contract import LOGITS

    opened = open_backend(bundle)
    assert Predictor(bundle, backend=opened, mc_samples=2).predict(SAMPLE_FILES[0]).label
    broken = open_backend(bundle)
    broken.outputs = tuple(spec for spec in broken.outputs if spec.name != LOGITS)
    with pytest.raises(ManifestError, match=f"lacks {LOGITS}"):
        Predictor(bundle, backend=broken)
    narrow = open_backend(bundle)
    narrow.manifest = replace(narrow.manifest, class_names=("A", "B"), untrained_classes=())
    with pytest.raises(ManifestError, match="names 2 classes"):
        Predictor(bundle, backend=narrow)


def test_an_empty_batch_is_an_empty_answer(bundle):
    assert Predictor(bundle, abcde=False).predict_batch([]) == []
