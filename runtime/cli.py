"""Runtime commands of `mnet` (torch-free): run, abcde."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the runtime commands to the `mnet` app."""
