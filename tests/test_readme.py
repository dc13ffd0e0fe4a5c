"""Every `mnet` and `mnet-export` command in the README's code blocks names a real command, each of its options
exists, and `--help` works for it."""

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
    return [line for line in joined if line.split(" ")[0] in APPS]


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
