"""The chain of custody around `mnet run`: every delivered report has exactly one audit record whatever stops the
run (SIGINT, SIGKILL, a cut log), --force supersedes instead of erasing, one run owns its output folder, the
batch's own files cannot be named by an input or redirected by a planted link, and files honour the umask."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from melanomanet.data.synth import render, sample_params
from runtime.app.cli import app
from runtime.audit import read_lines, report_location, verify
from runtime.manifest import sha256_file
from runtime.outputs import OutputFolder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--mc-samples", "2", "--no-abcde"]


def small_images(folder: Path, count: int, size: int = 64, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        image, _, _ = render(sample_params(rng, "NV", hairs=False), size)
        name = names[index] if names else f"img_{index:04d}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def first_run(bundle: Path, tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """`count` small images explained into a new folder; the folder and the command line, to run again."""
    out = tmp_path / "out"
    arguments = ["run", str(small_images(tmp_path / "in", count)), "--model", str(bundle), *FAST, "-o", str(out)]
    assert CliRunner().invoke(app, arguments).exit_code == 0
    return out, arguments


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in read_lines(log) if line.strip()]


def assert_one_record_per_report(out: Path) -> None:
    """Every visible report has exactly one prediction record naming it where it now is (records of superseded
    reports name the folder they moved to), with its bytes' sha256."""
    rows = records(out / "audit.jsonl")
    moves = [(r["seq"], r["moved"]) for r in rows if r.get("kind") == "supersede"]
    predictions = [{**r, "now": report_location(r, moves)} for r in rows if r.get("kind") == "prediction"]
    named = Counter(r["now"] for r in predictions)
    for report in out.glob("img_*.json"):
        assert named[report.name] == 1, f"{report.name} has {named[report.name]} records"
        logged = {r["report_sha256"] for r in predictions if r["now"] == report.name}
        assert logged == {sha256_file(report)}


@pytest.mark.slow
def test_sigint_and_sigkill_at_random_points_never_leave_a_report_without_its_record(bundle, tmp_path):
    inputs = small_images(tmp_path / "in", 24)
    command = [sys.executable, "-m", "runtime", "run", str(inputs), "--model", str(bundle), *FAST,
               "--workers", "2", "--threads", "1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    chooser = random.Random(20261207)
    folders = [tmp_path / f"out{n}" for n in range(5)]
    for trial in range(20):
        out = folders[trial // 4]
        process = subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=environment, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 60
        target = chooser.randint(1, 23)
        while time.monotonic() < deadline and process.poll() is None:
            summary = out / "summary.csv"
            if summary.exists() and summary.read_text().count("\n") > target:
                break
            time.sleep(chooser.uniform(0.0, 0.05))
        how = signal.SIGINT if trial % 2 == 0 else signal.SIGKILL
        if process.poll() is None:
            os.killpg(process.pid, how)
        process.wait(timeout=60)
        if (out / "audit.jsonl").exists():
            assert_one_record_per_report(out)
    for out in folders:
        done = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True, env=environment, cwd=ROOT,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(p.stem for p in out.glob("img_*.json")) == [f"img_{i:04d}" for i in range(24)]
        assert_one_record_per_report(out)
        assert verify([out / "audit.jsonl"]) == []
        assert not list(out.glob(".*.pending")) and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_a_cut_record_has_its_image_redone_and_a_whole_record_without_its_newline_is_kept(bundle, tmp_path):
    out, arguments = first_run(bundle, tmp_path, 4)
    log = out / "audit.jsonl"
    data = log.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    cut_report = json.loads(last)["report_file"]
    log.write_bytes(data[:len(data) - len(last) // 2 - 1])  # the last record cut mid-line
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0 and "(3 already done)" in " ".join(again.output.split())
    rows = records(log)
    assert rows[-1]["kind"] == "prediction" and rows[-1]["report_file"] == cut_report, "the cut image is redone"
    assert any(r["kind"] == "note" for r in rows) and verify([log]) == []
    assert_one_record_per_report(out)
    log.write_bytes(log.read_bytes().rstrip(b"\n"))  # a whole record, only its newline lost
    kept = CliRunner().invoke(app, arguments)
    assert kept.exit_code == 0 and "(4 already done)" in " ".join(kept.output.split())
    assert records(log)[-2] == rows[-1] and verify([log]) == []


@pytest.mark.slow
def test_force_supersedes_the_earlier_reports_and_verify_still_passes(bundle, tmp_path):
    out, arguments = first_run(bundle, tmp_path, 3)
    first = {path.name: sha256_file(path) for path in out.glob("img_*.json")}
    forced = CliRunner().invoke(app, [*arguments, "--force"])
    assert forced.exit_code == 0, forced.output
    kept = list((out / "superseded").glob("*/img_*.json"))
    assert {path.name: sha256_file(path) for path in kept} == first, "the earlier reports are kept, unchanged"
    supersede = [r for r in records(out / "audit.jsonl") if r["kind"] == "supersede"]
    assert len(supersede) == 1 and set(supersede[0]["moved"]) == set(first)
    checked = CliRunner().invoke(app, ["audit", "verify", str(out / "audit.jsonl")])
    assert checked.exit_code == 0, checked.output
    assert_one_record_per_report(out)


@pytest.mark.slow
def test_verify_names_a_report_without_its_record(bundle, tmp_path):
    out, _ = first_run(bundle, tmp_path, 2)
    (out / "planted.json").write_bytes((out / "img_0000.json").read_bytes())
    checked = CliRunner().invoke(app, ["audit", "verify", str(out / "audit.jsonl")], env={"COLUMNS": "200"})
    assert checked.exit_code == 1 and "planted.json" in checked.output and "unlogged" in checked.output


@pytest.mark.slow
def test_a_second_run_into_a_held_folder_is_refused_in_one_line(bundle, tmp_path):
    inputs = small_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    with OutputFolder(out):
        refused = CliRunner().invoke(app, ["run", str(inputs), "--model", str(bundle), *FAST, "-o", str(out)])
    assert refused.exit_code == 2 and "another run is writing there" in refused.output
    assert not list(out.glob("img_*"))


@pytest.mark.slow
def test_inputs_cannot_take_the_batchs_own_file_names(bundle, tmp_path):
    names = ["run.jpg", "tcav.jpg", "summary.jpg", "audit.jpg"]
    inputs = small_images(tmp_path / "in", len(names), names=names)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(inputs), "--model", str(bundle), *FAST, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["model_sha256"]
    reports = [row["report"] for row in csv.DictReader(open(out / "summary.csv"))]
    assert len(set(reports)) == 4 and not {"run.json", "tcav.json", "summary.json", "audit.json"} & set(reports)
    assert all((out / report).exists() for report in reports)
    again = CliRunner().invoke(app, ["run", str(inputs), "--model", str(bundle), *FAST, "-o", str(out)])
    assert again.exit_code == 0 and "(4 already done)" in " ".join(again.output.split())
    assert verify([out / "audit.jsonl"]) == []


@pytest.mark.slow
def test_a_log_that_is_not_a_log_and_planted_links_are_refused_before_anything_changes(bundle, tmp_path):
    inputs = small_images(tmp_path / "in", 1)
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two without newline")
    common = ["run", str(inputs), "--model", str(bundle), *FAST]
    refused = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "a"), "--audit", str(notes)])
    assert refused.exit_code == 2 and "is not an audit log" in refused.output
    assert notes.read_text() == "line one\nline two without newline" and not Path(f"{notes}.torn").exists()
    for planted in ("audit.jsonl", "summary.csv"):
        out = tmp_path / planted.replace(".", "_")
        out.mkdir()
        target = tmp_path / f"target-{planted}"
        target.write_text("precious\n")
        (out / planted).symlink_to(target)
        result = CliRunner().invoke(app, [*common, "-o", str(out)])
        assert result.exit_code == 2 and "symbolic link" in result.output, result.output
        assert target.read_text() == "precious\n"


@pytest.mark.slow
def test_written_files_honour_the_umask(bundle, tmp_path):
    inputs = small_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    result = subprocess.run(["sh", "-c", f"umask 022 && {sys.executable} -m runtime run {inputs} --model {bundle} "
                             f"--mc-samples 2 --no-abcde -o {out}"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for path in [*out.glob("img_*"), out / "summary.csv", out / "run.json"]:
        assert path.stat().st_mode & 0o777 == 0o644, path
