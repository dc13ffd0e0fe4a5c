"""`mnet doctor`: what it finds matches the installed packages; without ONNX Runtime it says how to fix it."""

from importlib.metadata import version

from typer.testing import CliRunner

import runtime.app.doctor
from melanomanet.cli import app


def test_doctor_reports_what_is_installed_and_exits_0_when_the_runtime_can_run():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    checks = {check.name: check for check in runtime.app.doctor.diagnose()}
    assert checks["runtime (ort-cpu)"].ok and version("onnxruntime") in checks["runtime (ort-cpu)"].detail
    assert checks["training and export"].ok and version("torch") in checks["training and export"].detail
    from runtime.abcde.segmenter import MODEL_FILE, segmenter_sha256

    dermoscopy = checks["ABCD segmenter (dermoscopy)"]
    assert dermoscopy.ok and segmenter_sha256(MODEL_FILE)[:12] in dermoscopy.detail and checks["ABCD rules"].ok
    ray = checks["archives on Ray (mnet run --engine ray)"]
    assert ray.ok and version("ray") in ray.detail and "melanomanet-edge[ray]" in ray.fix


def test_doctor_names_the_fix_when_onnxruntime_is_missing(monkeypatch):
    monkeypatch.setattr(runtime.app.doctor, "onnxruntime_providers", lambda: [])
    monkeypatch.setattr(runtime.app.doctor, "gpu_name", lambda: None)
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "pip install melanomanet-edge" in result.output and "no NVIDIA GPU found" in result.output


def test_doctor_finds_a_changed_segmenter_file(tmp_path):
    from runtime.abcde.segmenter import MODEL_FILE, using_model

    changed = tmp_path / MODEL_FILE.name
    changed.write_bytes(MODEL_FILE.read_bytes() + b"\0")
    (tmp_path / MODEL_FILE.with_suffix(".json").name).write_bytes(MODEL_FILE.with_suffix(".json").read_bytes())
    with using_model(changed, "dermoscopy"):
        check = {c.name: c for c in runtime.app.doctor.model_file_checks()}["ABCD segmenter (dermoscopy)"]
    assert not check.ok and "does not match its record" in check.detail


def test_the_serving_advice_fits_how_the_package_was_installed(tmp_path):
    from runtime.serving.server import REQUIREMENTS, setup_hint

    installed = setup_hint(tmp_path / "mnet-serve", from_checkout=False)
    assert "make install" not in installed and "melanomanet-edge[serve]" in installed
    assert f"python3 -m venv {tmp_path / 'mnet-serve'}" in installed and str(REQUIREMENTS) in installed
    assert "make install" in setup_hint(tmp_path / ".venv-serve", from_checkout=True)
