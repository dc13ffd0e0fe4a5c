"""What every command shares (runtime/app/console.py): one exit-code rule, conventional usage lines, progress and
tables that read well in a log, and a missing extra named in one line instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from export.cli import app as export_app
from melanomanet.cli import app
from runtime.app.console import LineProgress
from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(SAMPLES / "ISIC_0034376.jpg")


def commands(application: typer.Typer, prefix: tuple[str, ...] = ()):
    group = typer.main.get_command(application)
    stack = [(prefix, group)]
    while stack:
        path, command = stack.pop()
        if hasattr(command, "commands"):
            stack += [(path + (name,), sub) for name, sub in command.commands.items()]
        else:
            yield path, command


@pytest.mark.parametrize("application, name", [(app, "mnet"), (export_app, "mnet-export")])
def test_usage_lines_name_arguments_as_posix_does(application, name):
    """NAME when required, [NAME] when optional: no {name} placeholders."""
    for path, _ in commands(application):
        usage = CliRunner().invoke(application, [*path, "--help"]).output.splitlines()[0]
        assert "{" not in usage and usage.startswith("Usage: "), usage


@pytest.mark.parametrize("argv", [
    ["abcde", SAMPLE, "--lesion-at", "9999,5"],
    ["abcde", "nonexist.jpg"],
    ["abcde", SAMPLE, "--lesion-at", "left"],
    ["abcde", SAMPLE, "--mm-per-px", "-1"],
    ["run", SAMPLE, "--model", "nonexist.onnx", "-o", "{tmp}/o"],
    ["run", SAMPLE, "-o", "{tmp}/o"],
    ["run", SAMPLE, "--model", "{bundle}", "--backend", "ort-cuda", "-o", "{tmp}/o"],
    ["run", SAMPLE, "--model", "{bundle}", "--class", "XYZ", "-o", "{tmp}/o"],
    ["run", SAMPLE, "--model", "{bundle}", "--server", "http://127.0.0.1:9", "-o", "{tmp}/o"],
    ["bench", "--model", "nonexist.onnx"],
    ["eval", "--data", "{tmp}/none", "--checkpoint", "{tmp}/none.safetensors"],
    ["calibrate", "--data", "{tmp}/none", "--checkpoint", "{tmp}/none.safetensors", "-o", "{tmp}/c.json"],
    ["export:onnx", "{tmp}/none.safetensors", "-o", "{tmp}/m.onnx"],
    ["export:verify", "nonexist.onnx", "--checkpoint", "{tmp}/none.safetensors"],
    ["export:trt", "nonexist.onnx", "-o", "{tmp}/m.engine"],
    ["export:check", "nonexist.onnx"],
    ["export:quantize", "nonexist.onnx", "--precision", "fp16", "--calib", "{tmp}", "-o", "{tmp}/m.onnx"],
    ["export:quantize", "{bundle}", "--precision", "int8", "--calib", "{tmp}"],
    ["bench", "--model", "nonexist.onnx", "--precision"],
    ["run", SAMPLE, "--model", "{bundle}", "--backend", "openvino-npu", "-o", "{tmp}/o"],
    ["serve", "--model", "{bundle}", "--backend", "openvino"],
])
def test_a_command_line_asking_for_the_impossible_exits_2_in_one_line(argv, bundle, tmp_path):
    """The README's rule: what the command line asks for cannot be done -> 2, one line saying why."""
    application = export_app if argv[0].startswith("export:") else app
    argv = [argv[0].removeprefix("export:"), *argv[1:]]
    argv = [word.replace("{tmp}", str(tmp_path)).replace("{bundle}", str(bundle)) for word in argv]
    result = CliRunner().invoke(application, argv)
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert "Traceback" not in result.output


def test_an_image_that_cannot_be_read_exits_1(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    result = CliRunner().invoke(app, ["abcde", str(broken)])
    assert result.exit_code == 1 and "not a readable image" in result.output


def test_off_a_terminal_progress_prints_lines_as_it_goes(capsys):
    """CI logs and files get a line per tenth of the work and per new description (an epoch), not one bar at
    the end."""
    with LineProgress() as bar:
        task = bar.add_task("training", total=None, status="")
        for epoch in range(3):
            bar.reset(task, total=20)
            for step in range(1, 21):
                bar.update(task, completed=step, description=f"epoch {epoch + 1}/3", status=f"loss {1 / step:.2f}")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines if line.endswith("s)")].count("epoch 2/3") == 11
    assert any(line.startswith("epoch 3/3: 20/20 loss 0.05") for line in lines)


def test_tables_are_not_cut_at_80_columns_in_a_log():
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}  # pytest sets it to 80
    done = subprocess.run([str(Path(sys.executable).with_name("mnet")), "doctor"], capture_output=True, text=True,
                          timeout=120, env=environment)
    assert max(map(len, (done.stdout + done.stderr).splitlines())) > 80
    assert "unsupporte " not in done.stdout


MISSING_EXTRAS = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "timm", "torchvision", "onnx", "onnxscript"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
    sys.argv = sys.argv[1:]
    from runtime.app.cli import main as mnet
    from export.cli import main as mnet_export
    (mnet_export if sys.argv[0] == "mnet-export" else mnet)()
""")


@pytest.mark.parametrize("argv, extra", [
    (["mnet", "train", "--data", "d", "--out", "o"], "train"),
    (["mnet", "eval", "--data", "d", "--checkpoint", "c.safetensors"], "train"),
    (["mnet-export", "onnx", "c.safetensors", "-o", "m.onnx"], "train,export"),
])
def test_a_missing_extra_is_named_in_one_line(argv, extra, tmp_path):
    done = subprocess.run([sys.executable, "-c", MISSING_EXTRAS, *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and f"pip install 'melanomanet-edge[{extra}]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
