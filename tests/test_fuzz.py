"""Fuzzing the image path: generated files (valid and corrupted headers, odd sizes, bit depths, channel counts)
through load_image, the batch and mnet abcde. Nothing but an MnetError may escape, within a bounded time."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from melanomanet.cli import app
from runtime.app.batch import run_batch
from runtime.errors import MnetError
from runtime.imageio import load_image
from runtime.predictor import Predictor

FORMATS = (".png", ".jpg", ".bmp", ".tif", ".webp")


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    height = draw(st.integers(1, 96))
    width = draw(st.integers(1, 96))
    channels = draw(st.sampled_from([1, 3, 4]))
    depth = draw(st.sampled_from([np.uint8, np.uint16]))
    suffix = draw(st.sampled_from(FORMATS))
    if depth == np.uint16 and suffix in (".jpg", ".bmp", ".webp"):
        depth = np.uint8
    if suffix in (".jpg", ".webp") and channels == 4:
        channels = 3
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, np.iinfo(depth).max, (height, width, channels), dtype=depth)
    ok, encoded = cv2.imencode(suffix, pixels.squeeze(-1) if channels == 1 else pixels)
    data = bytearray(encoded.tobytes() if ok else b"")
    damage = draw(st.sampled_from(["none", "truncate", "flip", "header", "garbage"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= draw(st.integers(1, 255))
    elif damage == "header" and len(data) > 24:
        data[16:24] = draw(st.binary(min_size=8, max_size=8))
    elif damage == "garbage":
        data = bytearray(draw(st.binary(max_size=256)))
    return suffix, bytes(data)


@settings(max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(image_files())
def test_load_image_raises_nothing_but_mnet_errors(tmp_path_factory, generated):
    suffix, data = generated
    path = tmp_path_factory.mktemp("fuzz") / f"case{suffix}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except MnetError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@pytest.mark.slow
@settings(max_examples=12, deadline=20000, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(st.lists(image_files(), min_size=1, max_size=6))
def test_the_batch_and_abcde_survive_any_file(bundle, tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("fuzzbatch")
    inputs = folder / "in"
    inputs.mkdir()
    for index, (suffix, data) in enumerate(files):
        (inputs / f"f{index}{suffix}").write_bytes(data)
    summary = run_batch(Predictor(bundle, mc_samples=2), [inputs], folder / "out")
    rows = list(csv.DictReader(open(folder / "out" / "summary.csv")))
    assert {Path(row["input"]).name for row in rows} == {p.name for p in inputs.iterdir()}
    assert len(summary.outcomes) == len(rows)
    assert not (folder / "out" / "errors.log").exists(), (folder / "out" / "errors.log").read_text()
    for path in sorted(inputs.iterdir())[:2]:
        result = CliRunner().invoke(app, ["abcde", str(path)])
        assert result.exit_code in (0, 1) and (result.exception is None or isinstance(result.exception, SystemExit))
        assert "Traceback" not in result.output
