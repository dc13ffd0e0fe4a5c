"""Benchmark fixtures: models (random weights: latency does not depend on them), their bundles, and the
reference pipeline on the same weights. A ratio table (ours / reference, per group) closes the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
SAMPLE_IMAGE = SAMPLES / "ISIC_0034376.jpg"
ARCHS = os.environ.get("MNET_BENCH_ARCHS", "tf_efficientnetv2_b0,tf_efficientnetv2_s").split(",")
SIZES = [int(s) for s in os.environ.get("MNET_BENCH_SIZES", "224,384").split(",")]
INTERMEDIATE_LAYER = "backbone.blocks.4"


@pytest.fixture(scope="session", params=[(a, s) for a in ARCHS for s in SIZES], ids=lambda p: f"{p[0]}@{p[1]}")
def setup(request, tmp_path_factory):
    from export.source import Source
    from export.spec import ExportSpec
    from export.stages.onnx import to_onnx
    from melanomanet.checkpoint import make_manifest
    from melanomanet.model import build_model

    architecture, size = request.param
    torch.manual_seed(0)
    model = build_model(architecture).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    source = Source(model, make_manifest(model, size, "random weights (benchmark)"), Path("random"), "0" * 64)
    folder = tmp_path_factory.mktemp(f"{architecture}-{size}")
    bundle = to_onnx(source, ExportSpec(image_size=size), folder / "model.onnx")
    return {"arch": architecture, "size": size, "model": model, "bundle": bundle, "source": source,
            "folder": folder, "key": f"{architecture}@{size}"}


def record(benchmark, group: str, side: str) -> None:
    """Put ours and the reference side by side: same group, `side` says which is which."""
    benchmark.group = group
    benchmark.extra_info["side"] = side


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add ours/reference ratios and the GPU (if any) to the pytest-benchmark JSON."""
    output_json["ratios"] = ratio_table(output_json["benchmarks"])
    if torch.cuda.is_available():
        output_json["cuda"] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def ratio_table(rows: list[dict]) -> dict:
    """Per group: each side's median in ms and, where the reference ran, reference / side for the others."""
    by_group: dict[str, dict[str, float]] = {}
    for row in rows:
        by_group.setdefault(row["group"], {})[row["extra_info"].get("side", row["name"])] = row["stats"]["median"]
    table = {}
    for group, sides in sorted(by_group.items()):
        table[group] = {side: value * 1000 for side, value in sides.items()}
        if "reference" in sides:
            table[group].update({f"ratio_reference_over_{side}": sides["reference"] / value
                                 for side, value in sides.items() if side != "reference"})
    return table


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if not session or not session.benchmarks:
        return
    rows = [{"group": b.group, "name": b.name, "extra_info": b.extra_info, "stats": {"median": b.stats.median}}
            for b in session.benchmarks if b.stats]
    table = ratio_table(rows)
    terminalreporter.write_sep("=", "ours vs reference (median ms; speed-up = reference / ours)")
    for group, sides in table.items():
        cells = "  ".join(f"{k}={v:.2f}" for k, v in sides.items())
        terminalreporter.write_line(f"{group:<58} {cells}")
    out = Path(config.rootpath) / ".benchmarks" / "ratios.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(table, indent=2))
