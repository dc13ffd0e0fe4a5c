"""Hardening (issue 22): bombs and broken files, tampered bundles, colliding names, resumable batches that survive
SIGKILL, flat memory, EXIF orientation, malformed manifests, folder scans, options, follow-up registration."""

import csv
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

import runtime.imageio
from export.cli import app as export_app
from export.spec import Tolerances
from export.stages.verify import map_agreement
from melanomanet.cli import app
from melanomanet.data.synth import render, sample_params
from runtime.abcde.api import evolution_between
from runtime.errors import BackendError, ConfigError, ImageError, ManifestError
from runtime.imageio import load_image, read_image
from runtime.manifest import MANIFEST_KEY, Manifest, write_sidecar
from runtime.predictor import Predictor
from tests.conftest import SAMPLES, ctrl_c_after

ROOT = Path(__file__).resolve().parents[1]


def _png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _copy_bundle(bundle: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(bundle, folder / "model.onnx")
    shutil.copy(f"{bundle}.json", folder / "model.onnx.json")
    return folder / "model.onnx"


def _rewrite_manifest(path: Path, edit) -> None:
    model = onnx.load(str(path))
    entry = next(p for p in model.metadata_props if p.key == MANIFEST_KEY)
    manifest = json.loads(entry.value)
    edit(manifest)
    entry.value = json.dumps(manifest)
    onnx.save(model, str(path))


def _small_images(folder: Path, count: int, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        image, _, _ = render(sample_params(rng, "NV", hairs=False), size)
        cv2.imwrite(str(folder / f"img_{index:04d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


# 1, 6: pixel bombs are refused from the header, before anything is decoded; every decoder error is an ImageError


def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    bomb = _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    assert bomb.stat().st_size < 200

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded a file whose header is already over the pixel limit")

    monkeypatch.setattr(runtime.imageio.cv2, "imdecode", must_not_decode)
    with pytest.raises(ImageError, match="bomb.png: its header declares 40000x40000 px.*not decoded"):
        load_image(bomb)
    large = _png_header_only(tmp_path / "large.png", 20000, 20000)
    with pytest.raises(ImageError, match="20000x20000"):
        load_image(large)


def test_any_decoder_exception_becomes_an_image_error(tmp_path, monkeypatch):
    shutil.copy(SAMPLES / "ISIC_0034335.jpg", tmp_path / "a.jpg")

    def broken(*args, **kwargs):
        raise cv2.error("OpenCV(5.0.0) imgcodecs: some internal failure")

    monkeypatch.setattr(runtime.imageio.cv2, "imdecode", broken)
    with pytest.raises(ImageError, match="a.jpg: the decoder failed"):
        load_image(tmp_path / "a.jpg")


@pytest.mark.slow
def test_a_bomb_in_a_folder_fails_its_row_and_the_batch_finishes(bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _png_header_only(inputs / "bomb.png", 40000, 40000)
    shutil.copy(SAMPLES / "ISIC_0034338.jpg", inputs)
    result = CliRunner().invoke(app, ["run", str(inputs), "--model", str(bundle), "-o", str(tmp_path / "out"),
                                      "--mc-samples", "4", "--no-abcde"])
    assert result.exit_code == 1
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["bomb.png"]["status"] == "failed" and "pixels" in rows["bomb.png"]["error"]
    assert rows["ISIC_0034338.jpg"]["status"] == "ok"
    abcde = CliRunner().invoke(app, ["abcde", str(inputs / "bomb.png")])
    assert abcde.exit_code == 1 and abcde.output.count("error:") == 1 and "Traceback" not in abcde.output


# 7: EXIF orientation


def test_exif_orientation_is_applied_and_reported(tmp_path):
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLES / "ISIC_0034376.jpg")), cv2.COLOR_BGR2RGB)
    picture = Image.fromarray(rgb)
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright, header = read_image(tmp_path / "phone.jpg")
    assert header["exif_orientation"] == 6 and upright.shape == (rgb.shape[1], rgb.shape[0], 3)
    plain = load_image(SAMPLES / "ISIC_0034376.jpg")
    assert np.abs(upright.astype(int) - np.rot90(plain, k=-1)).mean() < 3


# 2, 8: bundles verified on load; manifests validated against schema and graph


@pytest.mark.slow
def test_tampered_weights_edited_manifest_and_missing_sidecar_are_refused(bundle, tmp_path):
    flipped = _copy_bundle(bundle, tmp_path / "flipped")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"sha256 [0-9a-f]{64} does not match the sidecar's [0-9a-f]{64}"):
        Predictor(flipped)

    swapped = _copy_bundle(bundle, tmp_path / "swapped")
    _rewrite_manifest(swapped, lambda m: m.update(class_names=["NV", "MEL", *m["class_names"][2:]]))
    with pytest.raises(ManifestError, match="does not match the sidecar"):
        Predictor(swapped)
    sidecar = json.loads(Path(f"{swapped}.json").read_text())
    sidecar["sha256"] = runtime.manifest.sha256_file(swapped)
    Path(f"{swapped}.json").write_text(json.dumps(sidecar))
    with pytest.raises(ManifestError, match=r"differs from its sidecar's \(class_names\)"):
        Predictor(swapped)

    lonely = _copy_bundle(bundle, tmp_path / "lonely")
    Path(f"{lonely}.json").unlink()
    with pytest.raises(ManifestError, match="no sidecar"):
        Predictor(lonely)
    unchecked = Predictor(lonely, verify=False, abcde=False).predict(SAMPLES / "ISIC_0034338.jpg").to_dict()
    assert unchecked["model"]["verified_against_sidecar"] is False
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(flipped), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "does not match the sidecar" in result.output
    assert not (tmp_path / "o").exists()
    result = CliRunner().invoke(app, ["run", str(SAMPLES / "ISIC_0034338.jpg"), "--model", str(lonely), "-o",
                                      str(tmp_path / "o2"), "--no-verify", "--no-abcde", "--mc-samples", "2"])
    assert result.exit_code == 0 and "--no-verify" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(class_names=["A", "B", "C"], untrained_classes=[]),
     "names 3 classes but the graph gives 9 logits"),
    (lambda m: m.update(untrained_classes=["XYZ"]), "untrained_classes .*XYZ.* are not among the class names"),
    (lambda m: m["preprocessing"].pop("mean"), "malformed manifest.*mean"),
    (lambda m: m["preprocessing"].update(image_size="large"), "image_size 'large'"),
    (lambda m: m["preprocessing"].update(std=[0.2, 0.0, 0.2]), "std .* must be positive"),
    (lambda m: m["preprocessing"].update(image_size=320), "the manifest says 3 x 320 x 320"),
])
def test_a_malformed_manifest_is_refused_at_load(bundle, tmp_path, edit, message):
    """Edited consistently (the sidecar rewritten too), so only the validation can catch it."""
    path = _copy_bundle(bundle, tmp_path)
    _rewrite_manifest(path, edit)
    model = onnx.load(str(path))
    raw = next(p.value for p in model.metadata_props if p.key == MANIFEST_KEY)
    Path(f"{path}.json").write_text(json.dumps({"artifact": path.name, "sha256": runtime.manifest.sha256_file(path),
                                                MANIFEST_KEY: json.loads(raw)}))
    with pytest.raises(ManifestError, match=message):
        Predictor(path)


def test_a_foreign_onnx_with_a_copied_manifest_is_refused(bundle, tmp_path):
    import torch

    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(4, 9).eval(), (torch.zeros(1, 4),), str(foreign), dynamo=False)
    manifest = Manifest.from_json(next(p.value for p in onnx.load(str(bundle)).metadata_props
                                       if p.key == MANIFEST_KEY))
    model = onnx.load(str(foreign))
    model.metadata_props.add(key=MANIFEST_KEY, value=manifest.to_json())
    onnx.save(model, str(foreign))
    write_sidecar(foreign, manifest)
    with pytest.raises(ManifestError, match="lacks image, mc_mask"):
        Predictor(foreign)


# 3, 5, 9, 10: unique names, folder scans, output folder, resume


@pytest.mark.slow
def test_colliding_stems_get_their_own_reports(bundle, tmp_path):
    inputs = tmp_path / "in"
    for folder, name in (("a", "dup.jpg"), ("b", "dup.jpg"), ("c", "dup-2.jpg")):
        (inputs / folder).mkdir(parents=True)
        shutil.copy(SAMPLES / "ISIC_0034338.jpg", inputs / folder / name)
    (inputs / "a" / "dup.jpg").write_bytes((SAMPLES / "ISIC_0034376.jpg").read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(inputs), "--model", str(bundle), "-o", str(out), "--mc-samples", "2",
                                      "--no-abcde"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "summary.csv")))
    reports = [row["report"] for row in rows]
    assert len(rows) == 3 and len(set(reports)) == 3
    for row in rows:
        report = json.loads((out / row["report"]).read_text())
        assert report["image"] == Path(row["input"]).name
        assert report["input"]["sha256"] == runtime.manifest.sha256_file(row["input"])


def test_folder_scans_give_every_skipped_entry_a_row(bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(SAMPLES / "ISIC_0034338.jpg", inputs)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "animated.gif")
    (inputs / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (inputs / "dangling.jpg").symlink_to(inputs / "nowhere.jpg")
    (inputs / "loop_a.jpg").symlink_to(inputs / "loop_b.jpg")
    (inputs / "loop_b.jpg").symlink_to(inputs / "loop_a.jpg")
    (inputs / "x.jpg").mkdir()
    shutil.copy(SAMPLES / "ISIC_0034500.jpg", inputs / "x.jpg" / "inside.jpg")
    found, skipped = runtime.imageio.collect_images([inputs])
    assert sorted(f.path.name for f in found) == ["ISIC_0034338.jpg", "inside.jpg"]
    reasons = {path.name: reason for path, reason in skipped}
    assert "unsupported format (.gif)" in reasons["animated.gif"]
    assert "unsupported format (.heic)" in reasons["phone.heic"]
    assert "broken link" in reasons["dangling.jpg"]
    assert "link loop" in reasons["loop_a.jpg"] and "link loop" in reasons["loop_b.jpg"]
    assert "folder named like an image" in reasons["x.jpg"]


@pytest.mark.slow
def test_the_output_folder_is_checked_and_another_runs_folder_refused(bundle, tmp_path):
    image = str(SAMPLES / "ISIC_0034338.jpg")
    (tmp_path / "a_file").write_text("x")
    common = ["--model", str(bundle), "--mc-samples", "2", "--no-abcde"]
    for out, message in ((tmp_path / "a_file", "is a file"), (Path("/proc/mnet-cannot-write"), "cannot write")):
        result = CliRunner().invoke(app, ["run", image, *common, "-o", str(out)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    out = str(tmp_path / "out")
    assert CliRunner().invoke(app, ["run", image, *common, "-o", out]).exit_code == 0
    other = CliRunner().invoke(app, ["run", image, *common, "-o", out, "--seed", "3"])
    assert other.exit_code == 2 and "another run (different --seed)" in other.output
    forced = CliRunner().invoke(app, ["run", image, *common, "-o", out, "--seed", "3", "--force"])
    assert forced.exit_code == 0 and "(0 already done)" in " ".join(forced.output.split())
    again = CliRunner().invoke(app, ["run", image, *common, "-o", out, "--seed", "3"])
    assert again.exit_code == 0 and "(1 already done)" in " ".join(again.output.split())


def test_a_named_input_that_does_not_exist_exits_2_and_creates_nothing(bundle, tmp_path):
    for command in ("run", "abcde"):
        out = tmp_path / f"{command}_out"
        extra = ["--model", str(bundle)] if command == "run" else []
        result = CliRunner().invoke(app, [command, str(tmp_path / "nothere.jpg"), *extra, "-o", str(out)])
        assert result.exit_code == 2 and "nothere.jpg: no such file or folder" in result.output, result.output
        assert not out.exists()


@pytest.mark.slow
def test_a_changed_class_is_named_by_its_option(bundle, tmp_path):
    image, out = str(SAMPLES / "ISIC_0034338.jpg"), str(tmp_path / "out")
    common = ["--model", str(bundle), "--mc-samples", "2", "--no-abcde", "-o", out]
    assert CliRunner().invoke(app, ["run", image, *common]).exit_code == 0
    other = CliRunner().invoke(app, ["run", image, *common, "--class", "MEL"])
    assert other.exit_code == 2 and "(different --class)" in other.output and "cam_class" not in other.output


def test_an_implausible_scale_is_refused_unless_forced(tmp_path):
    image = str(SAMPLES / "ISIC_0034338.jpg")
    refused = CliRunner().invoke(app, ["abcde", image, "--mm-per-px", "5"])
    assert refused.exit_code == 2 and "--force-scale" in refused.output and "0.001-1 mm per pixel" in refused.output
    forced = CliRunner().invoke(app, ["abcde", image, "--mm-per-px", "5", "--force-scale", "--json", "-"])
    assert forced.exit_code == 0, forced.output
    assert CliRunner().invoke(app, ["abcde", image, "--mm-per-px", "0.02", "--json", "-"]).exit_code == 0


@pytest.mark.slow
def test_a_run_killed_at_any_point_resumes_to_one_complete_report_per_input(bundle, tmp_path):
    inputs = _small_images(tmp_path / "in", 200)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "runtime", "run", str(inputs), "--model", str(bundle), "-o", str(out),
               "--mc-samples", "2", "--no-abcde", "--threads", "1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for kill_after_rows in (15, 70, 140):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                                   cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            summary = out / "summary.csv"
            if summary.exists() and summary.read_text().count("\n") > kill_after_rows:
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        finished = list(csv.DictReader(open(out / "summary.csv")))
        assert all(row["status"] == "ok" for row in finished)
        for row in finished:
            assert (out / row["report"]).exists()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already done" in done.stderr and "(0 already done)" not in done.stderr
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 200 and len({row["input"] for row in rows}) == 200
    assert all(row["status"] == "ok" for row in rows)
    stems = sorted(path.stem for path in out.glob("img_*.json"))
    assert stems == [f"img_{i:04d}" for i in range(200)]
    for stem in stems:
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.gradcampp.png").exists()
    assert not list(out.glob(".*.tmp"))


PEAK_RSS = """
import resource, sys
from runtime.app.batch import run_batch
from runtime.predictor import Predictor
summary = run_batch(Predictor(sys.argv[1], mc_samples=2, abcde=False, threads=1), [sys.argv[2]], sys.argv[3])
assert not summary.failed
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_stays_flat_over_a_batch(bundle, tmp_path):
    def peak_kb(count: int) -> int:
        inputs = _small_images(tmp_path / f"in{count}", count, size=256)
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bundle), str(inputs), str(tmp_path / f"o{count}")],
                              capture_output=True, text=True, cwd=ROOT, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    small, large = peak_kb(20), peak_kb(120)
    assert large <= 1.2 * small, f"peak RSS {small} kB for 20 images, {large} kB for 120"


# 11: E only for the same lesion


@pytest.mark.slow
def test_no_two_different_real_lesions_register():
    images = {path.name: load_image(path) for path in sorted(SAMPLES.glob("*.jpg"))}
    registered = [(a, b) for a, b in itertools.permutations(images, 2)
                  if evolution_between(images[a], images[b])["registration"]["registered"]]
    assert registered == []


@pytest.mark.parametrize("seed, growth", [(1, 1.08), (2, 1.15), (3, 1.2)])
def test_synthetic_follow_ups_register_and_recover_growth(seed, growth):
    params = sample_params(np.random.default_rng(seed), "NV", hairs=True)
    prior, _, _ = render(params, 384)
    follow_up, _, _ = render(replace(params, radius=params.radius * growth), 384)
    result = evolution_between(prior, follow_up)
    assert result["registration"]["registered"], result["registration"]
    assert result["changes"]["linear_growth"] == pytest.approx(growth, rel=0.05)


@pytest.mark.slow
def test_abcde_exits_1_with_the_reason_when_the_prior_is_another_lesion(tmp_path):
    result = CliRunner().invoke(app, ["abcde", str(SAMPLES / "ISIC_0034500.jpg"), "--prior",
                                      str(SAMPLES / "ISIC_0034376.jpg"), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 1 and "was not compared" in result.output
    evolution = json.loads((tmp_path / "e.json").read_text())["evolution"]
    assert evolution["registration"]["registered"] is False and evolution["registration"]["reason"]


# 12, 13: options that cannot be honoured


@pytest.mark.parametrize("arguments, message", [
    (["--mc-samples", "0"], "--mc-samples"),
    (["--mm-per-px", "-1"], "not positive"),
    (["--mm-per-px", "0"], "not positive"),
    (["--backend", "cuda"], "'ort-cpu', 'ort-cuda', 'ort-trt', 'openvino', 'openvino-bf16', 'openvino-gpu', "
                                "'openvino-npu', 'tensorrt'"),
    (["--threads", "-2"], "--threads"),
])
def test_run_refuses_values_it_cannot_honour(arguments, message, tmp_path):
    """Refused while the command line is parsed: no model is opened (the path need not exist)."""
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", "model.onnx", "-o", str(tmp_path), *arguments])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["abcde", str(SAMPLES / "ISIC_0034338.jpg"), "--mm-per-px", "-1"],
                                     ["bench", "--model", "m.onnx", "--mc-samples", "0"],
                                     ["bench", "--model", "m.onnx", "--batch", "0"]])
def test_other_commands_refuse_bad_values(command):
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_tensorrt_backend_given_an_onnx_file_names_the_engine_it_needs(bundle):
    with pytest.raises(BackendError, match=r"engine file \(.engine\).*mnet-export trt"):
        Predictor(bundle, backend="tensorrt")


@pytest.mark.slow
def test_dynamic_batch_with_an_inner_cam_layer_is_refused(checkpoint, tmp_path):
    result = CliRunner().invoke(export_app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                             "--dynamic-batch", "--cam-layer", "backbone.blocks.4"])
    assert result.exit_code == 2 and "--dynamic-batch works with the last-layer export only" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_predictor_refuses_zero_samples_and_negative_scale(bundle):
    with pytest.raises(ConfigError, match="at least 1"):
        Predictor(bundle, mc_samples=0)
    with pytest.raises(ConfigError, match="positive"):
        Predictor(bundle, mm_per_px=-1.0)


# 14: constant GradCAM++ maps


def test_constant_maps_are_compared_directly_not_correlated():
    zeros = np.zeros((8, 8))
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    assert map_agreement(zeros, zeros.copy(), Tolerances())[:2] == ("gradcampp_constant_abs", 0.0)
    name, value, limit, larger = map_agreement(zeros, ramp, Tolerances())
    assert name == "gradcampp_constant_abs" and value > limit and not larger
    name, value, limit, larger = map_agreement(ramp, ramp * 2 + 1, Tolerances())
    assert name == "gradcampp_pearson" and value == pytest.approx(1.0) and larger


@pytest.mark.parametrize("application, command, message", [
    (app, ["synth", "out", "--count", "0"], "--count"),
    (app, ["synth", "out", "--size", "8"], "--size"),
    (app, ["eval", "--data", "d", "--checkpoint", "c", "--split", "validation"], "--split"),
    (app, ["eval", "--data", "d", "--checkpoint", "c", "--bootstrap", "-1"], "--bootstrap"),
    (app, ["calibrate", "--checkpoint", "c", "--data", "d", "--score", "entropy"], "--score"),
    (app, ["synth-ood", "out", "--count", "0"], "--count"),
    (app, ["concepts", "synth", "out", "--count", "0"], "--count"),
    (export_app, ["onnx", "c.safetensors", "--image-size", "8"], "--image-size"),
    (export_app, ["onnx", "c.safetensors", "--opset", "9"], "--opset"),
    (export_app, ["check", "m.onnx", "--target", "coreml"], "--target"),
    (export_app, ["trt", "m.onnx", "--workspace", "0"], "--workspace"),
    (app, ["concepts", "train", "--checkpoint", "c", "--concepts", "d", "--image-size", "8"], "--image-size"),
    (app, ["train", "--data", "d", "--out", "o", "--epochs", "0"], "--epochs"),
    (app, ["run", "x.jpg", "--model", "m.onnx", "--workers", "0"], "--workers"),
    (app, ["doctor", "--verbose"], "--verbose"),
    (export_app, ["all", "c.safetensors", "--image-size", "8"], "--image-size"),
    (export_app, ["verify"], "Missing argument 'model'"),
])
def test_every_command_refuses_a_wrong_value_in_one_line(application, command, message):
    result = CliRunner().invoke(application, command)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert sum(line.startswith("Error") for line in result.output.splitlines()) == 1


def test_a_bad_profile_range_exits_2_before_tensorrt_is_needed(bundle, tmp_path):
    result = CliRunner().invoke(export_app, ["trt", str(bundle), "-o", str(tmp_path / "m.engine"), "--batch", "8:4:1"])
    assert result.exit_code == 2 and "MIN:OPT:MAX" in result.output


@pytest.mark.slow
def test_the_pipelined_batch_writes_what_the_sequential_one_does(bundle, tmp_path):
    """Stages of different images overlapped on 3 threads: the same reports (timings aside), byte-identical
    pictures, rows in the same order, and a bad file still fails alone."""
    from runtime.app.batch import run_batch

    inputs = _small_images(tmp_path / "in", 9, size=160)
    (inputs / "broken.jpg").write_bytes(b"not an image")
    predictor = Predictor(bundle, mc_samples=6)
    one = run_batch(predictor, [inputs], tmp_path / "one", workers=1)
    three = run_batch(predictor, [inputs], tmp_path / "three", workers=3)
    assert [o.row for o in one.outcomes] == [o.row for o in three.outcomes]
    assert sum(o.status == "failed" for o in three.outcomes) == 1
    for report in sorted((tmp_path / "one").glob("img_*.json")):
        first, second = (json.loads(p.read_text()) for p in (report, tmp_path / "three" / report.name))
        first.pop("timings_ms"), second.pop("timings_ms")
        assert first == second
    for picture in sorted((tmp_path / "one").glob("*.png")):
        assert picture.read_bytes() == (tmp_path / "three" / picture.name).read_bytes()


def test_folder_scans_skip_lesion_masks_saying_so(tmp_path):
    """`mnet run` on a `mnet synth-clinical` folder explained its truth/ masks as photos."""
    shutil.copy(SAMPLES / "ISIC_0034338.jpg", tmp_path)
    for folder in ("truth", "masks"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "ISIC_0034338_mask.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(tmp_path / "ISIC_0034338_segmentation.png"), np.zeros((8, 8), np.uint8))
    found, skipped = runtime.imageio.collect_images([tmp_path])
    assert [f.path.name for f in found] == ["ISIC_0034338.jpg"]
    reasons = {path.name: reason for path, reason in skipped}
    assert "lesion masks" in reasons["truth"] and "lesion masks" in reasons["masks"]
    assert "a lesion mask" in reasons["ISIC_0034338_segmentation.png"]
    named, _ = runtime.imageio.collect_images([tmp_path / "truth" / "ISIC_0034338_mask.png"])
    assert len(named) == 1, "a mask named on the command line is explained as asked"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 3])
def test_ctrl_c_in_a_batch_keeps_a_row_for_every_report_written(bundle, tmp_path, workers):
    """Ctrl-C once left 22 reports and 18 summary rows. Interrupted: every written report has its row, the error
    says how far it got and how to resume, and rerunning finishes the rest."""
    from runtime.app.batch import run_batch
    from runtime.errors import Interrupted

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(8):
        shutil.copy(SAMPLES / "ISIC_0034338.jpg", inputs / f"lesion_{index}.jpg")
    predictor = Predictor(bundle, mc_samples=2, abcde=False)
    with pytest.raises(Interrupted, match=r"interrupted after \d of 8 images .* rerun the same command"):
        run_batch(predictor, [inputs], tmp_path / "out", progress=ctrl_c_after(3), workers=workers)
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(row["report"] for row in rows) == sorted(path.name for path in out.glob("lesion_*.json"))
    assert len(rows) >= 3
    summary = run_batch(predictor, [inputs], out, workers=workers)
    assert len(summary.outcomes) == 8 and summary.resumed == len(rows)


def test_a_class_is_accepted_in_any_case_and_the_table_shows_the_path_given(bundle, tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(SAMPLES / "ISIC_0034338.jpg", tmp_path / "sub" / "a.jpg")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "sub"), "--model", str(bundle), "--class", "mel",
                                      "--mc-samples", "2", "--no-abcde", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "a.json").read_text())["gradcampp"]["class"] == "MEL"
    assert str(tmp_path / "sub" / "a.jpg") in result.output.replace("\n", "")
