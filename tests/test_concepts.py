"""FastCAV: closed-form vectors on synthetic concept sets, carried in the bundle, scored torch-free."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from export.cli import app as export_app
from melanomanet.checkpoint import load_checkpoint
from melanomanet.cli import app
from melanomanet.concepts import CONCEPTS, concept_params, fast_cav, probe_accuracy, save_cavs
from melanomanet.data.synth import render
from runtime.predictor import Predictor
from runtime.preprocess import preprocess
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cavs(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("concepts")
    runner = CliRunner()
    drawn = runner.invoke(app, ["concepts", "synth", str(folder / "sets"), "--count", "80", "--size", "224"])
    assert drawn.exit_code == 0
    result = runner.invoke(app, ["concepts", "train", "--checkpoint", str(checkpoint), "--concepts",
                                 str(folder / "sets"), "-o", str(folder / "cavs.safetensors"),
                                 "--json", str(folder / "cavs.json"), "--image-size", "224"])
    assert result.exit_code == 0, result.output
    assert "trained at 128 px" in result.output  # embedded at another size than the model learnt: said so
    return folder / "cavs.safetensors", json.loads((folder / "cavs.json").read_text())


def test_fastcav_separates_the_synthetic_concepts(cavs):
    _, report = cavs
    accuracies = {name: row["fastcav_accuracy"] for name, row in report["concepts"].items()}
    print("FastCAV held-out accuracy", accuracies,
          "SGD-CAV", {n: r["sgdcav_accuracy"] for n, r in report["concepts"].items()})
    assert set(accuracies) == set(CONCEPTS) and report["image_size"] == 224 and report["checkpoint_image_size"] == 128
    # The 5-epoch fixture model encodes size and colour, hardly shape (here about 0.50 / 0.63 / 0.96 / 0.98; the
    # demo recipe's figures over several draws are in the README). A wrong vector (sign, centring) falls to or
    # below chance (0.5); the 0.9 for every concept is not met by briefly trained models.
    assert accuracies["large_diameter"] >= 0.85
    assert np.mean(list(accuracies.values())) >= 0.6
    for row in report["concepts"].values():
        assert -1 <= row["cosine_fast_vs_sgd"] <= 1 and row["fastcav_seconds"] < row["sgdcav_seconds"]


@pytest.mark.parametrize("concept", ["asymmetry", "irregular_border"])
def test_shape_concept_sets_differ_in_shape_not_size(concept):
    """Rendered truth masks: positives and negatives of a shape concept cover the same area (a lobed
    outline of the same radius would not), and the concept itself differs."""
    rng = np.random.default_rng(3)
    areas = {}
    for positive in (True, False):
        drawn = [concept_params(rng, concept, positive) for _ in range(12)]
        areas[positive] = [render(params, 224)[1].mean() for params in drawn]
        assert all(getattr(params, "asymmetry" if concept == "asymmetry" else "irregularity") > 0
                   for params in drawn) == positive
    np.testing.assert_allclose(areas[True], np.mean(areas[False]), rtol=0.02)
    assert np.mean(areas[False]) == pytest.approx(np.pi * 0.22**2, rel=0.03)  # + the filled boundary pixels


def test_asymmetry_concept_images_are_measurably_asymmetric():
    """The mirror-overlap asymmetry of the rendered truth masks: clearly asymmetric positives, symmetric
    negatives (an earlier lopsided outline measured 0.03, as round as the negatives)."""
    from runtime.abcde.criteria import shape_asymmetry
    from runtime.abcde.shape import region

    rng = np.random.default_rng(5)
    measured = {positive: [max(shape_asymmetry(region(render(concept_params(rng, "asymmetry", positive), 224)[1])))
                           for _ in range(12)] for positive in (True, False)}
    assert min(measured[True]) >= 0.15 and max(measured[False]) <= 0.05, measured


def test_fastcav_is_the_centred_mean_direction():
    rng = np.random.default_rng(0)
    positive, negative = rng.normal(1, 1, (50, 8)), rng.normal(-1, 1, (70, 8))
    cav, mean = fast_cav(positive, negative)
    expected = positive.mean(0) - np.concatenate([positive, negative]).mean(0)
    np.testing.assert_allclose(cav, expected / np.linalg.norm(expected))
    assert np.mean((positive - mean) @ cav > 0) > 0.95 and np.mean((negative - mean) @ cav < 0) > 0.95


@pytest.mark.parametrize("nuisance_sd, separation, fastcav_range, probe_range", [
    (0.15, 1.0, (0.99, 1.0), (0.99, 1.0)),  # learnt, isotropic: FastCAV as good as the probe
    (30.0, 1.0, (0.0, 0.6), (0.99, 1.0)),  # learnt, one strong nuisance axis: FastCAV fails, the probe does not
    (0.15, 0.0, (0.0, 0.6), (0.0, 0.6)),  # not learnt: both at chance
])
def test_probe_tells_an_unlearnt_concept_from_an_anisotropic_embedding(nuisance_sd, separation, fastcav_range,
                                                                      probe_range):
    """Two classes `separation` apart along both axes, spread 0.15 along y and `nuisance_sd` along x. With a
    strong nuisance the mean direction (1, 1) / sqrt(2) drowns in it (about 0.5) while the probe, which
    weighs directions by their spread, still separates the classes along y (about 0.999)."""
    rng = np.random.default_rng(0)

    def draw(centre, count):
        return np.c_[rng.normal(centre, nuisance_sd, count), rng.normal(centre, 0.15, count)]

    half = separation / 2
    positive, negative = draw(half, 300), draw(-half, 300)
    test, truth = np.r_[draw(half, 200), draw(-half, 200)], np.r_[np.ones(200), np.zeros(200)]
    cav, mean = fast_cav(positive, negative)
    fastcav = np.mean(((test - mean) @ cav > 0) == truth)
    probe = probe_accuracy(positive, negative, test, truth)
    assert fastcav_range[0] <= fastcav <= fastcav_range[1], fastcav
    assert probe_range[0] <= probe <= probe_range[1], probe


def test_runtime_concept_scores_equal_pytorch(cavs, checkpoint, tmp_path):
    path, _ = cavs
    bundle = tmp_path / "model.onnx"
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(bundle), "--image-size", "224",
                                             "--cavs", str(path)])
    assert result.exit_code == 0, result.output
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    model, manifest = load_checkpoint(checkpoint)
    predictor = Predictor(bundle, abcde=False)
    image = SAMPLES / "ISIC_0034338.jpg"
    scores = predictor.predict(image).to_dict()["concepts"]
    with torch.no_grad():
        rgb = predictor.predict(image).view_rgb
        tensor = torch.from_numpy(preprocess(rgb, predictor.manifest.preprocessing))[None]
        embedding = model.embed(model.forward_features(tensor))[0].double()
        target = int(model(tensor)[0].argmax())
    assert scores["class"] == manifest.class_names[target]
    for name in CONCEPTS:
        cav = torch.from_numpy(tensors[f"{name}.cav"]).double()
        centred = embedding - torch.from_numpy(tensors[f"{name}.mean"]).double()
        cosine = float(centred @ cav / centred.norm())
        derivative = float(model.head.weight[target].double() @ cav)
        assert scores["scores"][name]["cosine"] == pytest.approx(cosine, abs=1e-5)
        assert scores["scores"][name]["directional_derivative"] == pytest.approx(derivative, abs=1e-5)
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "-o", str(out), "--mc-samples", "4",
                                   "--no-abcde"])
    assert run.exit_code == 0, run.output
    tcav = json.loads((out / "tcav.json").read_text())
    assert sum(row["images"] for row in tcav.values()) == 5
    assert all(0 <= v <= 1 for row in tcav.values() for v in row["tcav"].values())


def test_bundle_without_cavs_has_no_concepts(bundle):
    report = Predictor(bundle, abcde=False).predict(SAMPLES / "ISIC_0034338.jpg").to_dict()
    assert report["concepts"] is None


def test_cavs_of_another_dimension_are_refused(checkpoint, tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_cavs(path, {"asymmetry.cav": np.ones(64, np.float32), "asymmetry.mean": np.zeros(64, np.float32)},
              {"image_size": 128})
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                             "--cavs", str(path)])
    assert result.exit_code == 1
    assert "dimension 64" in result.output and "1280" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_cavs_from_another_input_size_are_refused(cavs, checkpoint, tmp_path):
    """The embedding depends on the input size: CAVs trained at 224 px do not describe a 128-px bundle."""
    path, _ = cavs
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                             "--image-size", "128", "--cavs", str(path)])
    assert result.exit_code == 1
    assert "224-px" in result.output and "--image-size 128" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_cavs_from_another_checkpoint_are_refused(cavs, checkpoint, tmp_path):
    path, report = cavs
    from safetensors.numpy import load_file

    foreign = tmp_path / "foreign.safetensors"
    save_cavs(foreign, load_file(str(path)), {**report, "checkpoint_sha256": "f" * 64})
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                             "--image-size", "224", "--cavs", str(foreign)])
    assert result.exit_code == 1
    assert "ffffffffffff" in result.output and "--checkpoint" in result.output
    assert not (tmp_path / "m.onnx").exists()
