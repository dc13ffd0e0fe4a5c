"""The published report schema (runtime/schema): the files a batch writes follow it, the summary rows follow
theirs, and the schema itself is pinned (a rename breaks this file, not a user's parser)."""

from __future__ import annotations

import csv
import json

import pytest

from runtime.app.batch import SUMMARY_FIELDS, run_batch
from runtime.predictor import Predictor
from runtime.report import REPORT_SCHEMA
from tests.conftest import SAMPLES, SCHEMAS, schema_errors


def test_the_schemas_are_valid_and_name_the_report_version_and_the_summary_columns():
    from jsonschema import Draft202012Validator

    report = json.loads((SCHEMAS / "report.schema.json").read_text())
    summary = json.loads((SCHEMAS / "summary.schema.json").read_text())
    for schema in (report, summary):
        Draft202012Validator.check_schema(schema)
    assert report["properties"]["schema"]["const"] == REPORT_SCHEMA
    assert tuple(summary["x-columns"]) == SUMMARY_FIELDS == tuple(summary["required"])


@pytest.mark.slow
def test_the_files_a_batch_writes_follow_the_schemas(bundle, tmp_path):
    (tmp_path / "in").mkdir()
    for sample in SAMPLES.glob("*.jpg"):
        (tmp_path / "in" / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "in" / "notes.txt").write_text("not an image either")
    run_batch(Predictor(bundle, mc_samples=3), [tmp_path / "in"], tmp_path / "out", cam_class="MEL")
    reports = sorted((tmp_path / "out").glob("ISIC_*.json"))
    assert len(reports) == 5
    for path in reports:
        assert schema_errors(json.loads(path.read_text())) == [], path
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert {row["status"] for row in rows} == {"ok", "failed", "skipped"}
    for row in rows:
        assert schema_errors(row, "summary") == [], row


def test_a_renamed_or_missing_field_breaks_the_schema():
    report = json.loads((SCHEMAS / "report.schema.json").read_text())
    assert set(report["required"]) == {"schema", "image", "image_size", "input", "model", "prediction",
                                       "uncertainty", "referral", "calibration", "gradcampp", "abcde", "concepts",
                                       "timings_ms", "demo_weights", "disclaimer"}
    assert report["additionalProperties"] is False
    assert schema_errors({"schema": REPORT_SCHEMA}) != []


@pytest.mark.slow
def test_to_dict_is_the_written_report_but_for_the_heatmap_file_and_timings(bundle, tmp_path):
    """The README calls `Result.to_dict()` exactly the JSON report: only the heatmap PNG's name (which only a
    written report has) and the stage timings differ."""
    image = SAMPLES / "ISIC_0034376.jpg"
    predictor = Predictor(bundle, mc_samples=3)
    run_batch(predictor, [image], tmp_path / "out")
    written = json.loads((tmp_path / "out" / "ISIC_0034376.json").read_text())
    made = predictor.predict(image).to_dict()
    assert written["gradcampp"]["heatmap"] == "ISIC_0034376.gradcampp.png" and made["gradcampp"]["heatmap"] is None
    for report in (written, made):
        report["gradcampp"].pop("heatmap")
        report.pop("timings_ms")
    assert made == written
    assert len(made["input"]["sha256"]) == 64 and made["gradcampp"]["heatmap_grid"] == list(
        predictor.backend.manifest.outputs["cam_activations"][-2:])
    assert made["prediction"]["untrained_classes"] == list(predictor.manifest.untrained_classes)
    row = next(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert row["review_reasons"] == "; ".join(t["label"] for t in written["referral"]["triggers"])
