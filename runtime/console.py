"""What the three command-line apps share: the stderr console, the one way a user error ends a command (one red
line, the error's exit code), the progress bar, and the options more than one command takes."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from runtime.errors import MnetError

console = Console(stderr=True)


def fail(error: Exception) -> NoReturn:
    """End the command with one red line and the error's exit code (2: an option that cannot be honoured)."""
    console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(getattr(error, "exit_code", 1))


def guarded(action):
    """Run a library call; a user-fixable problem (any `MnetError`) becomes `fail`."""
    try:
        return action()
    except MnetError as error:
        fail(error)


def progress_bar(with_status: bool = True) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if with_status:
        columns.append(TextColumn("{task.fields[status]}"))
    return Progress(*columns, TimeRemainingColumn(), console=console)


class BackendName(str, Enum):
    ort_cpu = "ort-cpu"
    ort_cuda = "ort-cuda"
    ort_trt = "ort-trt"
    tensorrt = "tensorrt"


def positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not positive: give the millimetres one pixel spans, e.g. 0.02")
    return value


def point(value: str | None) -> tuple[float, float] | None:
    """'X,Y' (pixels of the image as shown, upright) -> (x, y)."""
    from runtime.abcde.api import parse_point

    if value is None:
        return None
    try:
        return parse_point(value)
    except MnetError as error:
        raise typer.BadParameter(str(error)) from None


BackendOpt = Annotated[BackendName, typer.Option(help="ort-cpu, ort-cuda, ort-trt (ONNX Runtime providers) or "
                                                 "tensorrt (a .engine file).")]
MmOpt = Annotated[Optional[float], typer.Option(callback=positive, help="Millimetres per pixel from the "
                                                "dermatoscope's calibration (diameters in mm; > 0).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Write every figure to this JSON file.")]
LesionAtOpt = Annotated[Optional[str], typer.Option(
    "--lesion-at", metavar="X,Y", callback=point,
    help="Where the lesion is, in pixels from the image's top-left corner (e.g. 320,240): when the view holds "
         "several lesions or none is found. Default: the most lesion-like blob near the centre.")]
