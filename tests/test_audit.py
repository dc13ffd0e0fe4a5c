"""The audit log (runtime/audit/), replay (runtime/app/replay.py), the SBOM (runtime/audit/sbom.py): every break
is found, parallel writers keep one chain, a kill loses at most the record in flight, a bad log stops a run before
its first image, a replay reproduces a logged prediction, and the SBOM is valid CycloneDX whose hash the logs and
the bundles carry."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from melanomanet.cli import app
from runtime.audit import AuditError, AuditLog, Identity, verify
from runtime.errors import ConfigError
from runtime.manifest import sha256_file
from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[1]


def entry(n: int) -> dict:
    return {"input_sha256": f"{n:064x}", "outputs": {"predicted": "NV"}, "report_sha256": None, "report_file": None}


def write_log(path: Path, records: int, **options) -> AuditLog:
    log = AuditLog(path, Identity(operator="op", device_id="dev"), **options)
    for n in range(records):
        log.record(entry(n))
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_intact_chain_verifies_and_names_who_ran_it(tmp_path):
    write_log(tmp_path / "audit.jsonl", 5)
    assert verify([tmp_path / "audit.jsonl"]) == []
    start, *records = map(json.loads, lines(tmp_path / "audit.jsonl"))
    assert start["kind"] == "start" and start["operator"] == "op" and start["device_id"] == "dev"
    assert [record["seq"] for record in records] == [1, 2, 3, 4, 5]
    assert all(record["prev"] == before["hash"] for before, record in zip([start, *records], records))


@pytest.mark.parametrize("damage, problem", [
    (lambda rows: rows.__setitem__(2, rows[2].replace('"NV"', '"MEL"')), "does not match its hash (edited)"),
    (lambda rows: rows.pop(3), "prev is not the hash of the record before"),
    (lambda rows: rows.insert(2, rows.pop(4)), "prev is not the hash of the record before"),
    (lambda rows: rows.pop(0), "does not begin with a start record"),
    (lambda rows: rows.__setitem__(1, "{not json"), "not a JSON record"),
])
def test_every_kind_of_break_is_found_where_it_is(tmp_path, damage, problem):
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    rows = lines(path)
    damage(rows)
    path.write_text("\n".join(rows) + "\n")
    breaks = verify([path])
    assert breaks and any(problem in found.problem for found in breaks), breaks
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 1 and "break" in result.output


def test_a_truncated_file_and_a_changed_report_are_breaks(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    (tmp_path / "a.json").write_text("{}")
    log.record({**entry(0), "report_file": "a.json", "report_sha256": sha256_file(tmp_path / "a.json")})
    assert verify([path]) == []
    (tmp_path / "a.json").write_text('{"edited": true}')
    assert "was changed after it was logged" in verify([path])[0].problem
    assert verify([path], check_reports=False) == []
    path.write_bytes(path.read_bytes()[:-20])
    assert any("truncated" in found.problem for found in verify([path], check_reports=False))


def _append_many(path: str, writer: int, count: int) -> None:
    log = AuditLog(path)
    for n in range(count):
        log.record(entry(writer * 1000 + n))


def test_parallel_writers_keep_one_chain(tmp_path):
    """Four processes append 25 records each to one log: no torn or interleaved line, one valid chain."""
    path = tmp_path / "audit.jsonl"
    AuditLog(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), writer, 25)) for writer in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    rows = [json.loads(row) for row in lines(path)]
    predictions = [row for row in rows if row["kind"] == "prediction"]
    assert len(predictions) == 100 and verify([path]) == []
    assert [row["kind"] for row in rows].count("session") == 4, "each writer that opened the log says so"
    assert len({row["input_sha256"] for row in predictions}) == 100


def test_a_record_cut_short_by_a_kill_is_set_aside_and_the_chain_goes_on(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    with open(path, "ab") as handle:
        handle.write(b'{"kind":"prediction","seq":4,"outp')
    assert verify([path])
    log = AuditLog(path)
    log.record(entry(99))
    assert verify([path]) == []
    assert (tmp_path / "audit.jsonl.torn").read_bytes().startswith(b'{"kind":"prediction","seq":4')
    assert "cut short" in json.loads(lines(path)[4])["note"]


def test_rotation_continues_the_chain_across_files(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 40, max_bytes=4096)
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) >= 3 and verify(files) == []
    middle = next(f for f in files if f.name == "audit.2.jsonl")
    first = json.loads(lines(middle)[0])
    assert first["chain"] == {"begins": "continued", "file": "audit.1.jsonl",
                              "last_hash": json.loads(lines(tmp_path / "audit.1.jsonl")[-1])["hash"],
                              "last_seq": json.loads(lines(tmp_path / "audit.1.jsonl")[-1])["seq"]}
    assert any("which was not given" in found.problem for found in verify([path, middle]))


def test_a_broken_log_is_refused_with_its_line_unless_started_anew(tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    rows = lines(path)
    rows[2] = rows[2].replace('"NV"', '"BCC"')
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(AuditError, match="broken at line 3 .* add --audit-new"):
        AuditLog(path)
    AuditLog(path, start_new=True).record(entry(7))
    assert verify([path]) == []
    start = json.loads(lines(path)[0])
    assert start["chain"]["begins"] == "anew after a broken log" and start["chain"]["broken_at_line"] == 3
    assert (tmp_path / start["chain"]["file"]).exists()


def test_an_unwritable_log_is_a_usage_error_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the audit log there"):
        AuditLog(tmp_path / "file" / "audit.jsonl")


@pytest.mark.slow
def test_mnet_run_logs_each_prediction_verifies_and_replays(bundle, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "-o", str(out), "--mc-samples",
                                      "4", "--operator", "op7", "--device-id", "scope-2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(row) for row in lines(out / "audit.jsonl")]
    predictions = [row for row in rows if row["kind"] == "prediction"]
    assert len(predictions) == 5 and rows[0]["operator"] == "op7" and rows[0]["device_id"] == "scope-2"
    from runtime.audit.sbom import sbom_sha256

    assert rows[0]["sbom_sha256"] == sbom_sha256()
    for row in predictions:
        report = out / row["report_file"]
        assert row["report_sha256"] == sha256_file(report)
        assert row["input_sha256"] == sha256_file(SAMPLES / json.loads(report.read_text())["image"])
        assert "input_name" not in row and row["mc_samples"] == 4 and row["seed"] == 0
    assert CliRunner().invoke(app, ["audit", "verify", str(out / "audit.jsonl")]).exit_code == 0
    again = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "-o", str(out), "--mc-samples",
                                     "4", "--operator", "op8"])
    rows = [json.loads(row) for row in lines(out / "audit.jsonl")]
    assert again.exit_code == 0 and [row["kind"] for row in rows].count("prediction") == 5, \
        "resumed images are not logged twice"
    assert rows[-1]["kind"] == "session" and rows[-1]["operator"] == "op8" and predictions[0]["operator"] == "op7"
    assert verify([out / "audit.jsonl"]) == []
    replayed = CliRunner().invoke(app, ["audit", "replay", f"{out / 'audit.jsonl'}:3", "--images", str(SAMPLES),
                                        "--bundles", str(bundle.parent), "--json", str(tmp_path / "replay.json")])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads((tmp_path / "replay.json").read_text())["identical"] is True
    rows = lines(out / "audit.jsonl")
    tampered = json.loads(rows[3])
    first_class = next(iter(tampered["outputs"]["probabilities"]))
    tampered["outputs"]["probabilities"][first_class] += 0.25
    (tmp_path / "tampered.jsonl").write_text(json.dumps(tampered) + "\n")
    differs = CliRunner().invoke(app, ["audit", "replay", f"{tmp_path / 'tampered.jsonl'}:{tampered['seq']}",
                                       "--images", str(SAMPLES), "--bundles", str(bundle.parent)])
    assert differs.exit_code == 1 and "probabilities" in differs.output


@pytest.mark.slow
def test_the_api_logs_when_asked_and_names_inputs_only_when_asked(bundle, tmp_path):
    from runtime.predictor import Predictor

    log = AuditLog(tmp_path / "api.jsonl", Identity(log_names=True))
    predictor = Predictor(bundle, mc_samples=3, audit=log)
    predictor.predict(SAMPLES / "ISIC_0034338.jpg")
    predictor.predict_batch([(SAMPLES / "ISIC_0034376.jpg").read_bytes(), b"junk"], names=["a.jpg", "b.jpg"])
    rows = [json.loads(row) for row in lines(tmp_path / "api.jsonl")][1:]
    assert [row["input_name"] for row in rows] == ["ISIC_0034338.jpg", "a.jpg"]
    assert rows[1]["input_sha256"] == sha256_file(SAMPLES / "ISIC_0034376.jpg")
    assert verify([tmp_path / "api.jsonl"]) == []
    Predictor(bundle, mc_samples=3, audit=tmp_path / "plain.jsonl").predict(SAMPLES / "ISIC_0034338.jpg")
    assert "input_name" not in json.loads(lines(tmp_path / "plain.jsonl")[1])


@pytest.mark.slow
def test_a_log_that_cannot_be_written_stops_mnet_run_before_the_first_image(bundle, tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "-o", str(tmp_path / "out"),
                                      "--audit", str(tmp_path / "file" / "audit.jsonl")])
    assert result.exit_code == 2 and "cannot write the audit log there" in result.output
    assert not list((tmp_path / "out").glob("ISIC_*")), "no image was explained"


def test_the_sbom_is_valid_cyclonedx_and_reproducible(tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    result = CliRunner().invoke(app, ["doctor", "--sbom", str(tmp_path / "sbom.json")])
    assert result.exit_code == 0, result.output
    document = (tmp_path / "sbom.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    names = {component["name"] for component in json.loads(document)["components"]}
    assert {"numpy", "onnxruntime", "opencv-python-headless", "melanomanet-edge"} <= names
    from runtime.audit.sbom import sbom_sha256

    assert sha256_file(tmp_path / "sbom.json") == sbom_sha256() in result.output


def test_the_soup_page_is_generated_from_the_locks():
    import subprocess
    import sys

    page = subprocess.run([sys.executable, str(ROOT / "scripts" / "soup.py")], capture_output=True, text=True,
                          check=True).stdout
    assert page == (ROOT / "docs" / "soup.md").read_text(), "run: python scripts/soup.py > docs/soup.md"


@pytest.mark.slow
def test_a_bundle_records_the_sbom_of_the_environment_it_was_exported_in(bundle):
    from runtime.audit.sbom import sbom_sha256
    from runtime.manifest import read_sidecar

    assert read_sidecar(bundle)[0].extra["export_sbom_sha256"] == sbom_sha256()


def test_replay_needs_the_files_and_says_where_it_looked(tmp_path):
    from runtime.app.replay import find_by_sha256, find_record

    write_log(tmp_path / "audit.jsonl", 2)
    assert find_record(f"{tmp_path / 'audit.jsonl'}:2")["seq"] == 2
    with pytest.raises(ConfigError, match="no prediction record"):
        find_record(f"{tmp_path / 'audit.jsonl'}:9")
    shutil.copy(SAMPLES / "ISIC_0034338.jpg", tmp_path)
    assert find_by_sha256([tmp_path], sha256_file(SAMPLES / "ISIC_0034338.jpg"), (".jpg",), "image").name == \
        "ISIC_0034338.jpg"
    with pytest.raises(ConfigError, match="no image with sha256"):
        find_by_sha256([tmp_path], "0" * 64, (".jpg",), "image")
