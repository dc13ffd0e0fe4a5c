"""`mnet bench` says what it measures: stages of whole explained predictions timed from files (report included),
mnet run's throughput one at a time and pipelined, and inference-only throughput labelled as such."""

import json

import pytest
from typer.testing import CliRunner

from melanomanet.cli import app
from tests.conftest import SAMPLES


@pytest.mark.slow
def test_bench_reports_whole_explained_predictions_from_files(bundle, tmp_path):
    result = CliRunner().invoke(app, ["bench", "--model", str(bundle), "--images", str(SAMPLES), "--repeats", "4",
                                      "--workers", "2", "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    stages = report["stages_ms"]
    assert {"decode", "preprocess", "inference", "abcde", "report", "total"} <= set(stages)
    assert stages["decode"]["p50"] > 0.1 and stages["report"]["p50"] > 1
    parts = sum(figures["mean"] for name, figures in stages.items() if name != "total")
    hidden = min(stages["abcde"]["mean"], stages["inference"]["mean"])  # ABCD runs beside inference
    assert parts - hidden - 0.05 * parts <= stages["total"]["mean"] <= parts * 1.05
    assert "wall time" in report["stages_include"]
    throughput = report["throughput"]
    assert {"run_sequential", "run_pipelined_2_workers", "inference_batch_1"} <= set(throughput)
    assert throughput["run_sequential"]["images"] == 4 and "JSON report" in throughput["run_sequential"]["includes"]
    assert "no decode, ABCD or report" in throughput["inference_batch_1"]["includes"]
