"""Every `mnet` and `mnet-export` command in the README's code blocks names a real command, each of its options
exists, and `--help` works for it."""

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from export.cli import app as export_app
from melanomanet.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
APPS = {"mnet": app, "mnet-export": export_app}


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    joined = [line.split("  #")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    commands = [command.strip() for line in joined for command in line.split("; ")]
    return [command for command in commands if command.split(" ")[0] in APPS]


def resolve(line: str) -> tuple[typer.Typer, list[str], object, list[str]]:
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
    command = typer.main.get_command(APPS[words[0]])
    path = []
    for word in words[1:]:
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
        path.append(word)
    return APPS[words[0]], path, command, [w for w in words if w.startswith("--")]


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 25
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("line", readme_commands())
def test_each_readme_command_parses(line):
    application, path, command, options = resolve(line)
    assert path and not hasattr(command, "commands"), f"{line!r} names no command"
    known = {opt for parameter in command.params for opt in (*parameter.opts, *parameter.secondary_opts)}
    assert not [option for option in options if option not in known], f"{line!r}: unknown options"
    result = CliRunner().invoke(application, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_jetson_install_lists_every_runtime_dependency():
    """docs/jetson.md installs the package with --no-deps (to keep NVIDIA's onnxruntime-gpu), so its explicit
    list must name every base dependency but onnxruntime."""
    import tomllib

    root = README.parent
    base = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!\[ ]", requirement)[0] for requirement in base} - {"onnxruntime"}
    listed = re.search(r"^pip install (numpy .*)$", (root / "docs" / "jetson.md").read_text(), flags=re.M)
    assert listed, "docs/jetson.md: no `pip install numpy ...` line"
    assert names <= set(listed.group(1).split()), names - set(listed.group(1).split())


def block_after(marker: str, language: str = "bash") -> str:
    """The first code block of `language` after the README's line holding `marker`."""
    text = README.read_text()
    return re.search(rf"```{language}\n(.*?)```", text[text.index(marker):], flags=re.S).group(1)


def as_printed_here(line: str, bundle: Path) -> str:
    """A README line with the demo bundle replaced by the test's, and the shipped assets and real model by absolute
    paths."""
    line = line.replace("demo_out/export/model.onnx", str(bundle)).replace("assets/", f"{README.parent}/assets/")
    return re.sub(r"(?<![\w/])models/", f"{README.parent}/models/", line)


@pytest.mark.slow
def test_the_explain_examples_run_as_printed(bundle, tmp_path):
    import subprocess
    import sys

    for line in block_after("**Explain an image**").splitlines():
        words = shlex.split(as_printed_here(line.split("  #")[0], bundle))
        done = subprocess.run([str(Path(sys.executable).with_name(words[0])), *words[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    assert (tmp_path / "reports" / "ISIC_0034376.json").exists() and (tmp_path / "change.png").exists()
    assert json.loads((tmp_path / "reports_mel" / "ISIC_0034376.json").read_text())["gradcampp"]["class"] == "MEL"
    namespace: dict = {}
    exec(as_printed_here(block_after("**Explain an image**", "python"), bundle), namespace)
    assert namespace["result"].to_dict()["schema"] == "mnet.report/1"
