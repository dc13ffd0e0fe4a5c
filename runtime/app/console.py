"""What the three command-line apps share: the stderr console, the one way a user error ends a command (one red
line, the error's exit code), the progress bar, and the options more than one command takes."""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from itertools import count
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from runtime.backends import BACKENDS
from runtime.errors import ConfigError, MnetError
from runtime.options import PLAUSIBLE_MM_PER_PX, check_mm_per_px


def _width(stream) -> int | None:
    """Rich's own width on a terminal; elsewhere (CI logs, files), where rich would cut tables at 80 columns,
    $COLUMNS or 160."""
    return None if stream.isatty() else int(os.environ.get("COLUMNS") or 160)


console = Console(stderr=True, width=_width(sys.stderr))
stdout = Console(width=_width(sys.stdout))


def fail(error: Exception) -> NoReturn:
    """End the command with one red line and the error's exit code (2: an option that cannot be honoured)."""
    console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(getattr(error, "exit_code", 1))


# Packages of the optional extras, by the module name an import fails on.
EXTRA_OF_MODULE = {"torch": "train", "torchvision": "train", "timm": "train", "safetensors": "train",
                   "sklearn": "train", "scipy": "train", "skimage": "train", "matplotlib": "train", "pandas": "train",
                   "isic_challenge_scoring": "train", "onnx": "export", "onnxscript": "export",
                   "tritonclient": "serve"}
DISTRIBUTION = "melanomanet-edge"


def require_named_inputs(inputs: list[Path]) -> None:
    """Every file or folder named on the command line exists, before anything is created (else exit 2)."""
    missing = [str(path) for path in inputs if not (path.exists() or path.is_symlink())]
    if missing:
        fail(ConfigError(f"{', '.join(missing)}: no such file or folder; check the path (nothing was written)"))


def _conventional_usage(argument) -> str:
    """An argument as POSIX usage lines write it: NAME when required, [NAME] when not, `...` when repeated
    (Typer 0.2x writes a required one as {name}, which reads like a placeholder to fill in)."""
    name = argument.display_name_raw.upper()
    name = name if argument.required else f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


typer.core.TyperArgument._usage_display_name = _conventional_usage


def run_app(app: typer.Typer, program: str, extras: str, command_extras: dict[str, str] | None = None) -> None:
    """Run a CLI app; a command whose optional extra is not installed ends with one line naming the extra to
    install (exit 2) rather than a traceback. `extras`: what the app's commands need, e.g. "train,export";
    `command_extras`: the commands that need less, and what ("check": "export")."""
    import sys

    try:
        app()
    except ImportError as error:  # ModuleNotFoundError, or an import refused by an import hook
        missing = (error.name or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(missing)
        if extra is None:
            raise
        words = [word for word in sys.argv[1:2] if not word.startswith("-")]
        command = " ".join([program] + words)
        wanted = (command_extras or {}).get(words[0], extras) if words else extras
        needed = wanted if extra in wanted.split(",") else ",".join(filter(None, (wanted, extra)))
        console.print("[red]error:[/red] " + escape(
            f"`{command}` needs {missing} (the `{extra}` extra), which is not installed here: pip install "
            f"'{DISTRIBUTION}[{needed}]'. The runtime commands (mnet run, abcde, bench, doctor) need no extra; "
            "mnet serve needs `serve`."), soft_wrap=True)
        raise SystemExit(2) from None


def guarded(action):
    """Run a library call; a user-fixable problem (any `MnetError`) becomes `fail`."""
    try:
        return action()
    except MnetError as error:
        fail(error)


def progress_bar(with_status: bool = True) -> Progress | LineProgress:
    """A live bar on a terminal; elsewhere (a log file, CI), plain lines as the work goes (`LineProgress`)."""
    if not console.is_terminal:
        return LineProgress(with_status)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if with_status:
        columns.append(TextColumn("{task.fields[status]}"))
    return Progress(*columns, TimeRemainingColumn(), console=console)


class LineProgress:
    """The progress bar's calls, printed as lines where no bar can be drawn: one when a task starts or changes
    its description (a new epoch), at every tenth of its total (every 50 steps without one) and at its end."""

    STEPS = 10
    UNSIZED_EVERY = 50

    def __init__(self, with_status: bool = True):
        self.with_status = with_status
        self.tasks: dict[int, dict] = {}
        self.ids = count()
        self.started = time.monotonic()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *raised) -> None:
        self.stop()

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        task = next(self.ids)
        self.tasks[task] = {"description": description, "total": total, "completed": 0, "fields": fields,
                            "shown": None}
        return task

    def reset(self, task: int, total: float | None = None) -> None:
        self.tasks[task].update(completed=0, total=total, shown=None)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["completed"] + advance)

    def update(self, task: int, completed: float | None = None, description: str | None = None,
               total: float | None = None, advance: float | None = None, **fields) -> None:
        state = self.tasks[task]
        if advance is not None:
            completed = state["completed"] + advance
        if total is not None:
            state["total"] = total
        if description is not None and description != state["description"]:
            state.update(description=description, shown=None)
        if completed is not None:
            state["completed"] = completed
        state["fields"].update(fields)
        mark = self._mark(state)
        if mark != state["shown"]:
            state["shown"] = mark
            self._print(state)

    def stop(self) -> None:
        for state in self.tasks.values():
            if state["total"] and state["completed"] < state["total"] and state["shown"] != "stopped":
                state["shown"] = "stopped"
                self._print(state)

    def _mark(self, state: dict):
        if state["total"]:
            return int(self.STEPS * state["completed"] / state["total"])
        return int(state["completed"] // self.UNSIZED_EVERY)

    def _print(self, state: dict) -> None:
        done = f"{state['completed']:g}" + (f"/{state['total']:g}" if state["total"] else "")
        status = state["fields"].get("status", "") if self.with_status else ""
        elapsed = time.monotonic() - self.started
        console.print(f"{state['description']}: {done} {status}".rstrip() + f" ({elapsed:.0f} s)", soft_wrap=True,
                      highlight=False)


BackendName = Enum("BackendName", {name.replace("-", "_"): name for name in BACKENDS}, type=str)


def positive(value: float | None) -> float | None:
    try:
        return check_mm_per_px(value)
    except MnetError:
        raise typer.BadParameter(f"{value} is not positive: give the millimetres one pixel spans, e.g. 0.02") from None


def point(value: str | None) -> tuple[float, float] | None:
    """'X,Y' (pixels of the image as shown, upright) -> (x, y)."""
    from runtime.abcde.api import parse_point

    if value is None:
        return None
    try:
        return parse_point(value)
    except MnetError as error:
        raise typer.BadParameter(str(error)) from None


BackendOpt = Annotated[BackendName, typer.Option(help=f"{', '.join(BACKENDS[:-1])} (ONNX Runtime providers) or "
                                                      f"{BACKENDS[-1]} (a .engine file).")]
MmOpt = Annotated[Optional[float], typer.Option(callback=positive, help="Millimetres per pixel from the "
                                                "dermatoscope's calibration (diameters in mm; "
                                                f"{PLAUSIBLE_MM_PER_PX[0]:g}-{PLAUSIBLE_MM_PER_PX[1]:g} unless "
                                                "--force-scale).")]
ForceScaleOpt = Annotated[bool, typer.Option(help="Use a --mm-per-px outside "
                                             f"{PLAUSIBLE_MM_PER_PX[0]:g}-{PLAUSIBLE_MM_PER_PX[1]:g} mm per pixel, "
                                             "the range of dermatoscopes and cameras.")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Write every figure to this JSON file.")]
OperatorOpt = Annotated[Optional[str], typer.Option(help="Who runs the predictions (an operator id, not a patient's "
                                                    "name), recorded in the audit log.")]
TrustedKeysOpt = Annotated[Optional[Path], typer.Option(
    help="Public keys (a .pub.pem file or a folder of them; default: $MNET_TRUSTED_KEYS): refuse a bundle, ABCD "
         "segmenter or rules file not signed by one of them (mnet-export keygen / sign; docs/robustness.md).")]
DeviceIdOpt = Annotated[Optional[str], typer.Option(help="Which device or workstation, recorded in the audit log.")]
LogNamesOpt = Annotated[bool, typer.Option(help="Also record each input's file name in the audit log (off: only its "
                                           "sha256; names can identify a patient).")]
AuditNewOpt = Annotated[bool, typer.Option(help="The audit log is broken: keep it aside (renamed) and start a new "
                                           "chain that names it. Without it a broken log stops the run.")]
AuditMaxMbOpt = Annotated[Optional[float], typer.Option(min=0.004, help="Rotate the audit log past this size in MB "
                                                        "(the chain continues into the next file).")]
LesionAtOpt = Annotated[Optional[str], typer.Option(
    "--lesion-at", metavar="X,Y", callback=point,
    help="Where the lesion is, in pixels from the image's top-left corner (e.g. 320,240): when the view holds "
         "several lesions or none is found. Default: the most lesion-like blob near the centre.")]
