"""Bundles bound to all their bytes and signable: external data refused, the sha256 checked before a backend reads
the file, Ed25519 signatures over the sidecar (and the ABCD model records) checked against trusted keys, and the
key that signed named in the report and the audit record."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from export.cli import app as export_app
from runtime.app.cli import app, trusted_key_source
from runtime.backends import open_backend
from runtime.errors import ManifestError
from runtime.manifest import read_sidecar, sidecar_path, write_sidecar
from runtime.signing import SignatureError, TrustedKeys, signature_path
from tests.conftest import SAMPLES

IMAGE = str(SAMPLES / "ISIC_0034376.jpg")
FAST = ["--mc-samples", "2", "--no-abcde"]


def copy_bundle(bundle: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file in (bundle, sidecar_path(bundle)):
        shutil.copy(file, folder / file.name)
    return folder / bundle.name


def keygen(folder: Path, name: str) -> tuple[Path, Path]:
    result = CliRunner().invoke(export_app, ["keygen", "-o", str(folder / f"{name}.pem")])
    assert result.exit_code == 0, result.output
    return folder / f"{name}.pem", folder / f"{name}.pub.pem"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_weights_kept_outside_the_file_are_refused(bundle, tmp_path, backend):
    if backend == "openvino" and importlib.util.find_spec("openvino") is None:
        pytest.skip("OpenVINO is not installed")
    model = onnx.load(str(bundle))
    outside = tmp_path / "model.onnx"
    onnx.save_model(model, str(outside), save_as_external_data=True, location="head.bin", size_threshold=0)
    write_sidecar(outside, read_sidecar(bundle)[0])  # a sidecar that matches the graph file's own bytes
    for verify in (True, False):
        with pytest.raises(ManifestError, match="external data"):
            open_backend(outside, backend, verify=verify)


@pytest.mark.slow
def test_the_sha256_is_checked_before_onnx_runtime_reads_the_file(bundle, tmp_path, monkeypatch):
    import onnxruntime

    tampered = copy_bundle(bundle, tmp_path)
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    opened = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: opened.append(a) or 1 / 0)
    with pytest.raises(ManifestError, match="does not match the sidecar"):
        open_backend(tampered, "ort-cpu")
    assert opened == [], "ONNX Runtime never saw the bytes"


@pytest.mark.slow
def test_signed_bundles_run_unsigned_or_foreign_or_edited_ones_are_refused(bundle, tmp_path):
    signed = copy_bundle(bundle, tmp_path / "signed")
    private, public = keygen(tmp_path, "maker")
    _, stranger = keygen(tmp_path, "stranger")
    result = CliRunner().invoke(export_app, ["sign", str(signed), "--key", str(private)])
    assert result.exit_code == 0 and signature_path(sidecar_path(signed)).is_file(), result.output
    trusted = TrustedKeys.load(public)
    key_id = next(iter(trusted.keys))
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["run", IMAGE, "--model", str(signed), *FAST, "-o", str(out), "--trusted-keys",
                                   str(public)])
    assert run.exit_code == 0, run.output
    report = json.loads(next(out.glob("ISIC_*.json")).read_text())
    assert report["model"]["signed_by"] == key_id
    record = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()][-1]
    assert record["bundle_signed_by"] == key_id

    unsigned = copy_bundle(bundle, tmp_path / "unsigned")
    for model, keys, message in ((unsigned, public, "unsigned"), (signed, stranger, "not among the trusted keys")):
        refused = CliRunner().invoke(app, ["run", IMAGE, "--model", str(model), *FAST, "-o", str(tmp_path / "x"),
                                           "--trusted-keys", str(keys)], env={"COLUMNS": "200"})
        assert refused.exit_code == 1 and message in refused.output, refused.output
        assert "Traceback" not in refused.output

    # The attack a sidecar cannot catch: labels swapped and the threshold raised, the sha256 recomputed.
    manifest, _ = read_sidecar(signed)
    names = list(manifest.class_names)
    names[0], names[1] = names[1], names[0]
    graph = onnx.load(str(signed))
    edited = manifest.with_updates(class_names=tuple(names))
    for entry in graph.metadata_props:
        if entry.key == "mnet.manifest":
            entry.value = edited.to_json()
    onnx.save(graph, str(signed))
    write_sidecar(signed, edited)
    open_backend(signed, "ort-cpu")  # the sidecar alone is satisfied
    with pytest.raises(SignatureError, match="changed after signing"):
        open_backend(signed, "ort-cpu", trusted_keys=trusted)


def test_keys_come_from_the_environment_and_no_verify_cannot_skip_them(tmp_path, monkeypatch):
    _, public = keygen(tmp_path, "maker")
    monkeypatch.setenv("MNET_TRUSTED_KEYS", str(tmp_path))
    keys = TrustedKeys.from_option(None)
    assert keys is not None and len(keys.keys) == 1, "the private key in the folder is not a trusted key"
    with pytest.raises(Exception, match="--no-verify cannot be combined"):
        open_backend(tmp_path / "model.onnx", "ort-cpu", verify=False, trusted_keys=keys)


@pytest.mark.slow
def test_the_abcd_model_files_must_be_signed_too(bundle, tmp_path, monkeypatch):
    import runtime.abcde.segmenter as segmenter
    from runtime.predictor import Predictor

    records = []
    for record in segmenter.model_records():
        shutil.copy(record, tmp_path / record.name)
        records.append(tmp_path / record.name)
    monkeypatch.setattr(segmenter, "model_records", lambda: records)
    signed = copy_bundle(bundle, tmp_path / "bundle")
    private, public = keygen(tmp_path, "maker")
    assert CliRunner().invoke(export_app, ["sign", str(signed), "--key", str(private)]).exit_code == 0
    with pytest.raises(SignatureError, match="ABCD model file .* unsigned"):
        Predictor(signed, trusted_keys=public)
    with pytest.raises(SignatureError, match="ABCD model file"):
        trusted_key_source(signed, public)
    result = CliRunner().invoke(export_app, ["sign", "--abcd", "--key", str(private)])
    assert result.exit_code == 0, result.output
    assert all(signature_path(record).is_file() for record in records)
    assert Predictor(signed, trusted_keys=public).model_info["signed_by"] is not None
    assert trusted_key_source(signed, public) == str(public.resolve())
    Predictor(signed, trusted_keys=public, abcde=False)  # without ABCD its files are not needed
