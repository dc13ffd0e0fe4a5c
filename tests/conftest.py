"""Shared fixtures: synthetic data and a briefly trained b0 checkpoint, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

TRAINED_FIXTURES = {"trained", "checkpoint", "bundle"}
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
REAL_GROUND_TRUTH = SHARED_DATA / "isic2019" / "ISIC_2019_Training_GroundTruth.csv"


def pytest_report_header(config):
    """Every run names the CPU it ran on and the flags that decide which precisions are native."""
    from runtime.hardware import cpu_summary, openvino_cpu_capabilities

    capabilities = openvino_cpu_capabilities()
    return [f"cpu: {cpu_summary()}"] + ([f"openvino cpu capabilities: {', '.join(capabilities)}"]
                                        if capabilities is not None else [])


def pytest_collection_modifyitems(items):
    """A test that needs the trained model (trained, exported, or both) is slow, whether or not it says so."""
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from melanomanet.data.synth import write_dataset

    folder = tmp_path_factory.mktemp("synth")
    write_dataset(folder, count=200, seed=7, size=128)
    return folder


@pytest.fixture(scope="session")
def trained(synth_dir, tmp_path_factory) -> dict:
    """A b0 model trained 8 epochs on 200 synthetic 128-px lesions, with its training summary. (3 epochs at
    learning rate 3e-3 sometimes collapsed to below chance, depending on the installed library versions.)"""
    from melanomanet.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    summary = train(TrainConfig(data=str(synth_dir), out=str(out), epochs=8, image_size=128, batch_size=8,
                                lr=2e-3, seed=0, trained_on="synthetic"))
    return {"checkpoint": out / "best.safetensors", "last": out / "last.safetensors", "summary": summary,
            "data": synth_dir}


@pytest.fixture(scope="session")
def checkpoint(trained) -> Path:
    return trained["checkpoint"]


@pytest.fixture(scope="session")
def bundle(checkpoint, tmp_path_factory) -> Path:
    """The default export (last-layer GradCAM target) of the trained checkpoint at 224 px."""
    from export.source import load_source
    from export.spec import ExportSpec
    from export.stages.onnx import to_onnx

    out = tmp_path_factory.mktemp("bundle") / "model.onnx"
    return to_onnx(load_source(checkpoint), ExportSpec(image_size=224, dynamic_batch=True), out)


SCHEMAS = Path(__file__).resolve().parents[1] / "runtime" / "schema"


def schema_errors(document: dict, name: str = "report") -> list[str]:
    """Where `document` breaks the published schema runtime/schema/<name>.schema.json (empty: valid)."""
    import json

    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
    return [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


@pytest.fixture(autouse=True, scope="session")
def every_report_is_checked_against_its_schema():
    """Every report any test makes in this process (Result.to_dict, which the batch and the server's replies
    call, builds it with runtime.report.report_dict) must follow the published mnet.report/1 schema."""
    import runtime.result

    original = runtime.result.report_dict

    def checked(result):
        made = original(result)
        errors = schema_errors(made)
        assert not errors, f"a report breaks runtime/schema/report.schema.json: {errors[:5]}"
        return made
    runtime.result.report_dict = checked
    yield
    runtime.result.report_dict = original


def ctrl_c_after(count: int):
    """A batch's progress callback that presses Ctrl-C (raises KeyboardInterrupt) once `count` images are done."""
    done = []

    def progress(path) -> None:
        done.append(path)
        if len(done) == count:
            raise KeyboardInterrupt

    return progress
