"""`mnet run --engine ray` on a real local Ray (2 CPUs): the same files as the local engine, one audit chain,
nothing lost or doubled when an actor dies, Ctrl-C keeps every finished row and the rerun resumes."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from melanomanet.cli import app
from runtime.app.batch import run_batch
from runtime.app.ray_engine import PredictorSpec, RayEngine, RaySettings
from runtime.audit import AuditLog, Identity, verify
from runtime.errors import ConfigError, Interrupted
from tests.conftest import SAMPLES, ctrl_c_after

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
SETTINGS = {"mc_samples": 4, "threads": 1}


@pytest.fixture(scope="module")
def local_ray():
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # DyingSpec travels to the actors
    yield ray
    ray.shutdown()


@pytest.fixture
def images(tmp_path) -> Path:
    """The five samples, twice over under other names, and a file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    for copy, sample in itertools.product(("a", "b"), sorted(SAMPLES.glob("*.jpg"))):
        shutil.copy(sample, folder / f"{copy}_{sample.name}")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def without_timings(report: bytes) -> bytes:
    """The report's bytes with its timings object taken out (it is the only thing that may differ)."""
    stripped, count = re.subn(rb'"timings_ms":\{[^{}]*\},?', b"", report)
    assert count == 1
    return stripped


def assert_same_outputs(local: Path, engine: Path) -> None:
    names = sorted(path.name for path in local.iterdir() if path.suffix in (".json", ".png") and
                   path.name != "audit.jsonl")
    assert names == sorted(path.name for path in engine.iterdir() if path.suffix in (".json", ".png") and
                           path.name != "audit.jsonl")
    for name in names:
        expected, got = (local / name).read_bytes(), (engine / name).read_bytes()
        if name.endswith(".json") and name != "run.json":
            assert without_timings(got) == without_timings(expected), name
        else:
            assert got == expected, name
    assert (local / "summary.csv").read_text() == (engine / "summary.csv").read_text()


def test_the_command_writes_what_the_local_engine_writes_and_exits_alike(bundle, images, tmp_path):
    """Its own Ray on this machine (no --address), the images given as a CSV list; one image fails."""
    listing = tmp_path / "archive.csv"
    with open(listing, "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "site"], *[[f"images/{p.name}", "x"] for p in sorted(images.iterdir())]])
    common = ["--model", str(bundle), "--mc-samples", "4", "--threads", "1"]
    local = CliRunner().invoke(app, ["run", str(listing), *common, "-o", str(tmp_path / "local")])
    assert local.exit_code == 1, local.output
    command = [sys.executable, "-m", "runtime", "run", str(listing), *common, "-o", str(tmp_path / "ray"),
               "--engine", "ray", "--actors", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, said
    assert "10 ok (0 already done), 1 failed" in said
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    rows = list(csv.DictReader(open(tmp_path / "ray" / "summary.csv")))
    assert [row["input"].endswith("broken.jpg") for row in rows if row["status"] == "failed"] == [True]
    assert verify([tmp_path / "ray" / "audit.jsonl"]) == []
    replayed = CliRunner().invoke(app, ["audit", "replay", f"{tmp_path / 'ray' / 'audit.jsonl'}:3", "--images",
                                        str(images), "--bundles", str(bundle.parent), "--json",
                                        str(tmp_path / "replay.json")])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads((tmp_path / "replay.json").read_text())["identical"] is True


@dataclass(frozen=True)
class DyingSpec(PredictorSpec):
    """A predictor whose actor process is killed (SIGKILL) on its `at`-th image, once in the whole run (`marker`
    records the pid it killed)."""

    marker: Path = Path()
    at: int = 3

    def open(self):
        predictor = super().open()
        explain, seen = predictor.predict_batch, itertools.count(1)

        def predict_batch(images, **options):
            if next(seen) == self.at and not self.marker.exists():
                self.marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return explain(images, **options)

        predictor.predict_batch = predict_batch
        return predictor


def predictions(log: Path) -> list[dict]:
    return [row for row in map(json.loads, log.read_text().splitlines()) if row["kind"] == "prediction"]


def explain(bundle, images, out, spec=None, actors=2, **batch):
    from runtime.predictor import Predictor

    engine = RayEngine(spec or PredictorSpec(bundle, SETTINGS), RaySettings(actors=actors), None)
    return run_batch(Predictor(bundle, **SETTINGS), [images], out, options=SETTINGS, engine=engine,
                     open_audit=lambda: AuditLog(out / "audit.jsonl", Identity()), **batch)


def test_a_killed_actor_loses_no_image_and_doubles_nothing(local_ray, bundle, images, tmp_path):
    marker = tmp_path / "killed.pid"
    out = tmp_path / "out"
    summary = explain(bundle, images, out, spec=DyingSpec(bundle.absolute(), SETTINGS, marker, at=3))
    killed = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    assert [o.status for o in summary.outcomes].count("ok") == 10 and len(summary.failed) == 1
    records = predictions(out / "audit.jsonl")
    assert sorted(row["report_file"] for row in records) == sorted(p.name for p in out.glob("*_ISIC_*.json"))
    assert len(records) == 10 and verify([out / "audit.jsonl"]) == []
    assert not list(out.glob(".*.pending"))


def test_ctrl_c_keeps_every_finished_row_and_the_rerun_resumes(local_ray, bundle, images, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match=r"interrupted after \d+ of 11 images .* rerun the same command"):
        explain(bundle, images, out, progress=ctrl_c_after(4))
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) >= 4
    assert sorted(row["report"] for row in rows if row["report"]) == sorted(p.name for p in out.glob("*_ISIC_*.json"))
    again = explain(bundle, images, out, actors=1)
    assert len(again.outcomes) == 11 and again.resumed == sum(row["status"] == "ok" for row in rows)
    assert len(predictions(out / "audit.jsonl")) == 10 and verify([out / "audit.jsonl"]) == []


def test_the_command_joins_a_running_cluster_and_leaves_it_running(local_ray, bundle, tmp_path):
    """--address: the module's Ray (its token saved in ~/.ray by Ray, as `ray start` saves it); the cluster
    outlives the run."""
    address = local_ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "runtime", "run", str(SAMPLES), "--model", str(bundle), "--mc-samples", "4",
               "-o", str(tmp_path / "out"), "--engine", "ray", "--address", address, "--actors", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and "5 ok (0 already done)" in said, said
    assert "starting a Ray" not in said and local_ray.is_initialized() and local_ray.cluster_resources()["CPU"] == 2
    assert verify([tmp_path / "out" / "audit.jsonl"]) == []


def test_lists_of_images_are_read_from_csv_and_parquet(tmp_path):
    import pyarrow
    import pyarrow.parquet

    from runtime.errors import ImageError
    from runtime.imageio import collect_images

    (tmp_path / "sub").mkdir()
    (tmp_path / "one.csv").write_text("path\nsub/a.jpg\n/abs/b.png\n\n")
    pyarrow.parquet.write_table(pyarrow.table({"site": ["x", "y"], "path": ["sub/a.jpg", "/abs/b.png"]}),
                                tmp_path / "two.parquet")
    for listing in ("one.csv", "two.parquet"):
        found, skipped = collect_images([tmp_path / listing])
        assert [entry.path for entry in found] == [tmp_path / "sub" / "a.jpg", Path("/abs/b.png")] and not skipped
    (tmp_path / "bad.csv").write_text("image,site\na.jpg,x\n")
    with pytest.raises(ImageError, match="bad.csv: cannot read this list of images .*no 'path' column"):
        collect_images([tmp_path / "bad.csv"])
    (tmp_path / "fake.parquet").write_bytes(b"not parquet")
    with pytest.raises(ImageError, match="fake.parquet: cannot read this list"):
        collect_images([tmp_path / "fake.parquet"])


def test_the_options_say_what_they_are_for(bundle, tmp_path):
    runner = CliRunner()
    stray = runner.invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "--actors", "2", "-o", str(tmp_path)])
    assert stray.exit_code == 2 and "--actors: for --engine ray" in stray.output
    both = runner.invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "--engine", "ray", "--workers", "2"])
    assert both.exit_code == 2 and "use --actors" in both.output
    with pytest.raises(ConfigError, match="the Ray cluster has 0 GPUs"):
        RaySettings(gpus_per_actor=1).pool_size({"CPU": 2})
    assert RaySettings().pool_size({"CPU": 4}) == 4 and RaySettings(gpus_per_actor=0.5).pool_size({"GPU": 2}) == 4


def test_the_runtime_runs_without_ray_and_says_how_to_get_it(bundle, tmp_path):
    """Ray hidden from the interpreter: the app imports and --engine ray exits 2, before any file is written,
    naming the extra to install (tests/test_install.py runs the local engine from a wheel installed without
    Ray)."""
    script = ("import sys; sys.modules['ray'] = None\n"
              "from runtime.app.cli import main\n"
              "sys.argv = ['mnet', 'run', sys.argv[1], '--model', sys.argv[2], '-o', sys.argv[3], '--engine', 'ray',"
              " '--no-audit']\n"
              "main()\n")
    done = subprocess.run([sys.executable, "-c", script, str(SAMPLES / "ISIC_0034335.jpg"), str(bundle),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "melanomanet-edge[ray]" in done.stdout + done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "out").exists()
