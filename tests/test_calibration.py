"""Temperature scaling, referral thresholds chosen on data, risk-coverage, out-of-distribution, and the
calibrated bundle in the runtime."""

import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from export.cli import app as export_app
from melanomanet.calibration import (
    calibration_figures,
    fit_temperature,
    risk_coverage,
    threshold_for_referral_rate,
    threshold_for_sensitivity,
)
from melanomanet.checkpoint import load_checkpoint
from melanomanet.cli import app
from melanomanet.evaluate import Evaluator
from runtime.manifest import MANIFEST_KEY, Manifest, write_sidecar
from runtime.predictor import Predictor
from runtime.preprocess import preprocess
from runtime.referral import ReferralRule
from runtime.uncertainty import mc_uncertainty, softmax, uncertainty_scores
from tests.conftest import SAMPLES


def _calibrated_logits(seed: int, count: int = 20000, classes: int = 9):
    """Logits whose softmax is the true label distribution (calibrated at T = 1), labels drawn from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (count, classes))
    probabilities = softmax(logits)
    targets = (probabilities.cumsum(axis=1) > rng.uniform(size=(count, 1))).argmax(axis=1)
    return logits, targets


@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_temperature_recovers_a_known_miscalibration(factor):
    logits, targets = _calibrated_logits(0)
    miscalibrated = logits * factor
    temperature = fit_temperature(miscalibrated, targets)
    assert temperature == pytest.approx(factor, rel=0.05)
    before = calibration_figures(softmax(miscalibrated), targets)
    after = calibration_figures(softmax(miscalibrated / temperature), targets)
    assert after["ece"] <= before["ece"] / 3 and after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]


@pytest.mark.parametrize("seed, target", [(0, 0.95), (1, 0.95), (2, 0.8), (3, 1.0), (4, 0.5)])
def test_target_sensitivity_threshold_is_the_largest_that_keeps_it(seed, target):
    rng = np.random.default_rng(seed)
    probability = np.round(rng.beta(2, 3, 300), 2)
    positive = rng.uniform(size=300) < 0.3
    chosen = threshold_for_sensitivity(probability, positive, target)
    candidates = [t for t in np.unique(probability) if np.mean(probability[positive] >= t) >= target]
    assert chosen == max(candidates)
    assert np.mean(probability[positive] >= chosen) >= target


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.35])
def test_referral_rate_threshold_refers_at_most_that_share(rate):
    scores = np.random.default_rng(1).gamma(2, 0.3, 1000)
    threshold = threshold_for_referral_rate(scores, rate)
    referred = np.mean(scores > threshold)
    assert referred <= rate and referred >= rate - 0.002


def test_risk_coverage_against_its_definition():
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 4, 400)
    score = rng.uniform(size=400)
    predictions = np.where(rng.uniform(size=400) < 1 - score, targets, (targets + 1) % 4)
    curve = risk_coverage({"s": score}, predictions, targets)["s"]
    order = np.argsort(score, kind="stable")
    errors = predictions[order] != targets[order]
    assert curve["aurc"] == pytest.approx(np.mean([errors[:k].mean() for k in range(1, 401)]))
    assert curve["rows"][0]["accuracy"] == np.mean(predictions == targets)
    half = order[:200]
    assert curve["rows"][10]["referral_rate"] == 0.5
    assert curve["rows"][10]["accuracy"] == np.mean(predictions[half] == targets[half])


def test_batch_scores_equal_the_runtime_uncertainty():
    mc_logits = np.random.default_rng(3).normal(0, 2, (6, 30, 9))
    scores = uncertainty_scores(softmax(mc_logits))
    for i in range(6):
        single = mc_uncertainty(mc_logits[i])
        assert scores["predictive"][i] == pytest.approx(single.predictive, abs=1e-12)
        assert scores["epistemic"][i] == pytest.approx(single.epistemic, abs=1e-12)
        assert scores["max_probability"][i] == pytest.approx(1 - single.mean_probabilities.max(), abs=1e-12)


def test_schema_1_manifests_read_with_the_papers_rule():
    old = {"architecture": "tf_efficientnetv2_b0", "schema": 1, "flag_threshold": 0.7,
           "preprocessing": {"image_size": 224, "mean": [0.5] * 3, "std": [0.2] * 3, "interpolation": "area"}}
    old["extra"] = {"split_seed": 7, "cam_mode": "intermediate", "concepts": {"names": ["asymmetry"]}, "opset": 20}
    manifest = Manifest.from_json(json.dumps(old))
    assert manifest.temperature == 1.0
    assert manifest.referral_rule == ReferralRule("predictive", 0.7)
    assert (manifest.split_seed, manifest.cam_mode, manifest.concepts) == (7, "intermediate", {"names": ["asymmetry"]})
    assert manifest.extra == {"opset": 20}


@pytest.mark.slow
def test_calibrated_bundle_gives_pytorch_softmax_of_logits_over_t(trained, checkpoint, tmp_path):
    """mnet calibrate -> mnet-export onnx --calibration -> Predictor: softmax(logits / T) of PyTorch (1e-5), the
    rule's threshold in the JSON and on the panel; the runtime's MC scores equal mnet eval's (same mask, T)."""
    calib = tmp_path / "calib.json"
    result = CliRunner().invoke(app, ["calibrate", "--checkpoint", str(checkpoint), "--data", str(trained["data"]),
                                      "-o", str(calib), "--referral-rate", "0.2", "--score", "epistemic"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(calib.read_text())
    assert (tmp_path / "calib.png").exists() and fitted["after"]["nll"] <= fitted["before"]["nll"] + 1e-9
    bundle = tmp_path / "model.onnx"
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(bundle), "--calibration", str(calib)])
    assert result.exit_code == 0, result.output

    temperature = fitted["temperature"]
    model, _ = load_checkpoint(checkpoint)
    predictor = Predictor(bundle, mc_samples=30, seed=4)
    assert predictor.manifest.temperature == temperature
    image = SAMPLES / "ISIC_0034338.jpg"
    outcome = predictor.predict(image)
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(rgb, predictor.manifest.preprocessing))[None]).double()
    np.testing.assert_allclose(outcome.probabilities, torch.softmax(logits / temperature, 1)[0].numpy(), atol=1e-5)

    report = outcome.to_dict()
    assert report["calibration"]["temperature"] == temperature
    rule = fitted["referral"]["rule"]
    assert report["referral"]["threshold"] == rule["threshold"] and report["referral"]["score"] == "epistemic"
    kinds = {trigger["kind"] for trigger in report["referral"]["triggers"]}
    assert ("epistemic" in kinds) == (report["uncertainty"]["epistemic"] > rule["threshold"])
    assert report["referral"]["flagged"] == report["uncertainty"]["flagged"] == bool(kinds)
    assert report["referral"]["chosen_by"] == "chosen for a 20 % referral rate on validation"
    if "epistemic" in kinds or not kinds:
        assert f"{rule['threshold']:.2f}, chosen for a 20 % referral rate on validation" in report["referral"]["reason"]

    scores = Evaluator(checkpoint, mc_samples=30, seed=4).folder(SAMPLES)
    index = scores.images.index(image.name)
    batch = uncertainty_scores(softmax(scores.mc_logits / temperature))
    assert batch["epistemic"][index] == pytest.approx(outcome.uncertainty.epistemic, abs=1e-4)
    assert batch["predictive"][index] == pytest.approx(outcome.uncertainty.predictive, abs=1e-4)


@pytest.mark.slow
def test_bundles_without_calibration_run_as_before(bundle, tmp_path):
    """A copy of the bundle with a schema-1 manifest (no temperature, no referral rule)."""
    model = onnx.load(str(bundle))
    entry = next(p for p in model.metadata_props if p.key == MANIFEST_KEY)
    manifest = json.loads(entry.value)
    for key in ("temperature", "referral"):
        manifest.pop(key)
    manifest["schema"] = 1
    entry.value = json.dumps(manifest)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    write_sidecar(old, Manifest.from_json(entry.value))
    image = SAMPLES / "ISIC_0034376.jpg"
    before = Predictor(old, abcde=False).predict(image)
    now = Predictor(bundle, abcde=False).predict(image)
    np.testing.assert_array_equal(before.probabilities, now.probabilities)
    assert before.referral["score"] == "predictive" and before.referral["threshold"] == 0.5
    assert before.uncertainty.flagged == (before.uncertainty.predictive > 0.5)
    assert "the paper's default" in before.referral["reason"]


@pytest.mark.slow
def test_target_sensitivity_and_ood_through_the_cli(trained, checkpoint, tmp_path):
    calib = tmp_path / "calib.json"
    result = CliRunner().invoke(app, ["calibrate", "--checkpoint", str(checkpoint), "--data", str(trained["data"]),
                                      "-o", str(calib), "--target-sensitivity", "MEL:0.95"])
    assert result.exit_code == 0, result.output
    referral = json.loads(calib.read_text())["referral"]
    assert referral["rule"]["class_name"] == "MEL" and referral["validation"]["sensitivity"] >= 0.95
    both = CliRunner().invoke(app, ["calibrate", "--checkpoint", str(checkpoint), "--data", str(trained["data"]),
                                    "-o", str(calib), "--target-sensitivity", "MEL:0.9", "--referral-rate", "0.1"])
    assert both.exit_code == 2 and "exactly one of" in both.output
    assert CliRunner().invoke(app, ["synth-ood", str(tmp_path / "ood"), "--count", "12", "--size", "96"]).exit_code == 0
    result = CliRunner().invoke(app, ["eval", "--data", str(trained["data"]), "--checkpoint", str(checkpoint),
                                      "--ood", str(tmp_path / "ood"), "--calibration", str(calib),
                                      "--out", str(tmp_path / "eval"), "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["ood"]["images"] == 12 and set(report["ood"]["auroc"]) == {"predictive", "epistemic",
                                                                             "max_probability"}
    assert all(0 <= value <= 1 for value in report["ood"]["auroc"].values())
    assert report["temperature"] == json.loads(calib.read_text())["temperature"]
    assert (tmp_path / "eval" / "risk_coverage.png").exists() and "AURC" in result.output


def test_a_calibration_of_another_checkpoint_is_refused(checkpoint, tmp_path):
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps({"schema": "mnet.calibration/1", "checkpoint_sha256": "0" * 64, "temperature": 2.0}))
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                             "--calibration", str(calib)])
    assert result.exit_code == 1 and "run mnet calibrate on this checkpoint" in " ".join(result.output.split())
