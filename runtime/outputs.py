"""The output folder both batch commands (`mnet run`, `mnet abcde`) write into: one run at a time holds it (a
lock), stale temporary files of a killed run are cleared, another run's outputs are refused unless forced, the
summary CSV gains a flushed row per input and never follows a planted link, an unexpected error's traceback goes
to errors.log, and Ctrl-C says how far the run got."""

from __future__ import annotations

import csv
import fcntl
import json
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from runtime.errors import ConfigError, Interrupted, MnetError
from runtime.imageio import open_no_follow, write_atomic

RUN_FILE = "run.json"
ERRORS_LOG = "errors.log"
LOCK_FILE = ".mnet-run.lock"
SUMMARY_FILE = "summary.csv"


class OutputFolder:
    """One run's hold on its output folder: checked writable, then an exclusive lock for the run's whole length
    (a second run into the same folder is refused at once, exit 2)."""

    def __init__(self, out: Path):
        self.out = out
        self.handle = None

    def __enter__(self) -> "OutputFolder":
        check_writable(self.out)
        lock = self.out / LOCK_FILE
        if lock.is_symlink():
            raise ConfigError(f"-o {self.out}: {LOCK_FILE} is a symbolic link; remove it and rerun")
        self.handle = open(lock, "ab")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise ConfigError(f"-o {self.out}: another run is writing there now; wait for it to finish, or give "
                              "another folder") from None
        return self

    def __exit__(self, *raised) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: is a file; give a folder for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mnet-write-probe"
        probe.unlink(missing_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"-o {out}: cannot write there ({error.strerror}); choose a folder you can write to") \
            from None


def prepare_output(out: Path, run: dict, force: bool) -> None:
    """Stale temporary files of a killed run removed; a folder holding another run's reports (another model
    or other options) refused unless `force`."""
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    recorded = _recorded_run(out)
    if recorded is not None and recorded != run and not force:
        changed = sorted(k for k in set(run["options"]) | set(recorded.get("options", {}))
                         if run["options"].get(k) != recorded.get("options", {}).get(k))
        what = ("model" if recorded.get("model_sha256") != run["model_sha256"]
                else ", ".join(option_name(key) for key in changed) or "run record")
        raise ConfigError(f"-o {out}: holds the reports of another run (different {what}); use another folder, "
                          "or --force to redo every image there (the earlier reports move to superseded/)")
    write_atomic(out / RUN_FILE, json.dumps(run, indent=2).encode())


# run.json's option keys that are not their command-line option's name with dashes.
OPTION_NAMES = {"cam_class": "--class", "verified": "--verify/--no-verify", "abcde": "--abcde/--no-abcde"}


def option_name(key: str) -> str:
    """The command-line option a run.json key records ("cam_class" -> "--class")."""
    return OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


def _recorded_run(out: Path) -> dict | None:
    try:
        return json.loads((out / RUN_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


@contextmanager
def summary_writer(out: Path, fields: tuple[str, ...]) -> Iterator[Callable[[dict], None]]:
    """`write(row)`: one flushed row of `summary.csv` (missing fields empty), so a killed run keeps every row."""
    with open_no_follow(out / SUMMARY_FILE) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow({key: row.get(key, "") for key in fields})
            handle.flush()

        yield write


def interrupted(done: int, total: int, out: Path) -> Interrupted:
    return Interrupted(f"interrupted after {done} of {total} images (their files and summary.csv rows are in {out}); "
                       "rerun the same command to resume")


def failure_message(error: Exception, out: Path, path: Path) -> str:
    """What a summary row says of an image that failed; an unexpected error's traceback goes to ERRORS_LOG."""
    if isinstance(error, (MnetError, OSError)):
        return str(error)
    return unexpected_failure(out, path, type(error).__name__, str(error), "".join(traceback.format_exception(error)))


def unexpected_failure(out: Path, path: Path, kind: str, message: str, trace: str) -> str:
    """An unexpected error (a defect, raised here or on a worker): its traceback appended to ERRORS_LOG, and what
    the image's summary row says of it."""
    with open_no_follow(out / ERRORS_LOG, "a") as log:
        log.write(f"{path}\n{trace}\n")
    return f"unexpected {kind}: {message} (traceback in {ERRORS_LOG}; please report it)"


def recorded_file(path: Path, digest: str | None) -> tuple[bytes, dict] | None:
    """The bytes and JSON an earlier run wrote at `path`, when there is one to compare with this input
    (`digest`); read once."""
    if digest is None or not path.exists():
        return None
    try:
        data = path.read_bytes()
        return data, json.loads(data)
    except (OSError, ValueError):
        return None


def recorded_output(path: Path, digest: str | None) -> dict | None:
    """The JSON an earlier run wrote at `path`, when there is one to compare with this input (`digest`)."""
    recorded = recorded_file(path, digest)
    return None if recorded is None else recorded[1]
