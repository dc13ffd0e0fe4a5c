"""`mnet abcde IMAGES_OR_FOLDERS... -o OUT`: per-image JSON, 0/255 mask at the upright size and overlay, summary.csv,
bad files recorded, resume, unique names, Ctrl-C keeping finished rows; one image without -o as before."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import runtime.abcde.batch as batch
from runtime.app.cli import app
from runtime.errors import Interrupted
from runtime.manifest import sha256_file

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"


def rows(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two samples (one turned by EXIF), a broken file, and a second file named like the first in a subfolder."""
    images = tmp_path / "in"
    (images / "visit2").mkdir(parents=True)
    shutil.copy(SAMPLES / "ISIC_0034376.jpg", images / "lesion.jpg")
    shutil.copy(SAMPLES / "ISIC_0034335.jpg", images / "visit2" / "lesion.jpg")
    picture = Image.open(SAMPLES / "ISIC_0034338.jpg")
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(images / "phone.jpg", exif=exif, quality=95)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    return images


def test_a_folder_gets_files_per_image_and_a_summary(folder, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["abcde", str(folder), "-o", str(out)])
    assert result.exit_code == 1, result.output  # one file could not be read
    summary = {Path(row["input"]).relative_to(folder).as_posix(): row for row in rows(out)}
    assert set(summary) == {"lesion.jpg", "visit2/lesion.jpg", "phone.jpg", "broken.jpg"}
    assert summary["broken.jpg"]["status"] == "failed" and "broken.jpg" in summary["broken.jpg"]["reasons"]
    names = {summary[key]["json"] for key in ("lesion.jpg", "visit2/lesion.jpg", "phone.jpg")}
    assert len(names) == 3  # the two lesion.jpg files do not overwrite each other
    for key in ("lesion.jpg", "visit2/lesion.jpg", "phone.jpg"):
        row = summary[key]
        report = json.loads((out / row["json"]).read_text())
        assert report["status"] == row["status"] and report["image"] == str(folder / key)
        if row["status"] != "measured":
            assert not row["mask"] and not list(out.glob(f"{Path(row['json']).stem}.mask.png"))
            continue
        mask = cv2.imread(str(out / row["mask"]), cv2.IMREAD_UNCHANGED)
        upright = Image.open(folder / key)
        width, height = upright.size
        if key == "phone.jpg":
            width, height = height, width  # EXIF 6: turned a quarter
        assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
        assert np.count_nonzero(mask) == report["segmentation"]["area_px"]
        assert int(row["asymmetry_points"]) == report["asymmetry"]["points"]
        assert row["structures"].split() == report["structures"]["present"]
        assert float(row["tds"]) == report["tds"]["value"] and row["tds_complete"] == str(report["tds"]["complete"])
        assert (out / f"{Path(row['json']).stem}.png").exists()
    assert "1 failed" in result.output


def test_rerunning_resumes_and_a_changed_input_is_redone(folder, tmp_path):
    out = tmp_path / "out"
    (folder / "broken.jpg").unlink()
    first = CliRunner().invoke(app, ["abcde", str(folder), "-o", str(out)])
    assert first.exit_code == 0, first.output
    stamps = {path.name: path.stat().st_mtime_ns for path in out.glob("*.json") if path.name != "run.json"}
    again = CliRunner().invoke(app, ["abcde", str(folder), "-o", str(out)])
    assert "(3 already done)" in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.json") if path.name != "run.json"} == stamps
    shutil.copy(SAMPLES / "ISIC_0034390.jpg", folder / "phone.jpg")
    third = CliRunner().invoke(app, ["abcde", str(folder), "-o", str(out)])
    assert "(2 already done)" in third.output
    report = json.loads((out / "phone.json").read_text())
    assert report["status"] in ("measured", "unreliable", "no_lesion")
    assert report["input_sha256"] == sha256_file(folder / "phone.jpg")
    assert len(rows(out)) == 3


def test_an_interrupted_batch_keeps_the_finished_rows(folder, tmp_path, monkeypatch):
    (folder / "broken.jpg").unlink()
    out = tmp_path / "out"
    real = batch.write_image_outputs
    calls = []

    def interrupted_on_the_second(*args):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(batch, "write_image_outputs", interrupted_on_the_second)
    with pytest.raises(Interrupted, match="rerun the same command to resume"):
        batch.analyze_batch([folder], out)
    finished = rows(out)
    assert len(finished) == 1 and (out / finished[0]["json"]).exists()


def test_one_image_keeps_the_table_and_batch_only_options_are_refused(tmp_path):
    image = SAMPLES / "ISIC_0034376.jpg"
    single = CliRunner().invoke(app, ["abcde", str(image), "--json", "-"])
    assert single.exit_code == 0 and json.loads(single.output)["image"] == str(image)
    many = CliRunner().invoke(app, ["abcde", str(image), str(SAMPLES / "ISIC_0034335.jpg")])
    assert many.exit_code == 2 and "-o OUT" in many.output
    prior = CliRunner().invoke(app, ["abcde", str(image), "-o", str(tmp_path / "o"), "--prior", str(image)])
    assert prior.exit_code == 2 and "--prior" in prior.output
