"""`mnet run` over many files: one report and panel per image, a summary CSV, nothing lost on bad input.

Each image's files appear together (heatmap and panel first, the JSON report last, each written atomically), so
a report JSON means a complete set. `summary.csv` gains a row, flushed, as each image finishes: a killed run
leaves every finished row. `run.json` records the model and options; rerunning the same command skips the
images whose reports are complete and whose input is unchanged (its sha256 is in the report). Nothing about an
image is kept in memory once its files are written.
"""

from __future__ import annotations

import csv
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from runtime.errors import ConfigError, MnetError
from runtime.imageio import Found, collect_images, encode_png, output_names, write_atomic
from runtime.manifest import sha256_file
from runtime.panel import render_panel

if TYPE_CHECKING:
    from runtime.predictor import Result

SUMMARY_FIELDS = ("input", "status", "label", "probability", "explained_class", "flagged", "predictive_entropy",
                  "report", "error")
RUN_FILE = "run.json"
ERRORS_LOG = "errors.log"


@dataclass
class Outcome:
    input: str
    status: str
    row: dict


@dataclass
class BatchSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    concepts: list[dict] = field(default_factory=list)
    resumed: int = 0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def write_outputs(result: Result, out: Path, stem: str, input_sha256: str | None = None) -> dict:
    """Heatmap and panel, then the report JSON last: a JSON on disk means a complete set of outputs."""
    heatmap_name = f"{stem}.gradcampp.png"
    write_atomic(out / heatmap_name, cv2.imencode(".png", np.uint8(np.clip(result.heatmap, 0, 1) * 255))[1].tobytes())
    result.heatmap_file = heatmap_name
    write_atomic(out / f"{stem}.png", encode_png(render_panel(result)))
    report = result.to_dict()
    if input_sha256 is not None:
        report["input"]["sha256"] = input_sha256
    write_atomic(out / f"{stem}.json", json.dumps(report, indent=2).encode())
    return report


def prepare_output(out: Path, run: dict, force: bool) -> None:
    """A writable folder; stale temporary files of a killed run removed; a folder holding another run's
    reports (another model or other options) refused unless `force`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: is a file; give a folder for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mnet-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"-o {out}: cannot write there ({error.strerror}); choose a folder you can write to") \
            from None
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    recorded = _recorded_run(out)
    if recorded is not None and recorded != run and not force:
        changed = sorted(k for k in set(run["options"]) | set(recorded.get("options", {}))
                         if run["options"].get(k) != recorded.get("options", {}).get(k))
        what = "model" if recorded.get("model_sha256") != run["model_sha256"] else ", ".join(changed) or "run record"
        raise ConfigError(f"-o {out}: holds the reports of another run (different {what}); use another folder, "
                          "or --force to redo every image there")
    write_atomic(out / RUN_FILE, json.dumps(run, indent=2).encode())


def _recorded_run(out: Path) -> dict | None:
    try:
        return json.loads((out / RUN_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def run_batch(predictor, inputs: list, out: Path, cam_class: str | None = None, progress=None,
              collected: tuple[list[Found], list] | None = None, options: dict | None = None,
              force: bool = False) -> BatchSummary:
    """`collected`: the result of `collect_images(inputs, out)` when the caller already has it. `options`: what
    else changes the reports (recorded in run.json with the model)."""
    out = Path(out)
    run = {"model_sha256": predictor.model_info["sha256"], "model": predictor.model_info["file"],
           "options": {"cam_class": cam_class, **(options or {})}}
    prepare_output(out, run, force)
    found, skipped = collected or collect_images(inputs, out)
    summary = BatchSummary()
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()

        def record(outcome: Outcome) -> None:
            summary.outcomes.append(outcome)
            writer.writerow(outcome.row)
            handle.flush()

        for path, reason in skipped:
            status, _, message = reason.partition(": ")
            record(Outcome(str(path), status, _row(path, status, error=message)))
        for entry, stem in zip(found, output_names(found)):
            outcome, concepts = _one(predictor, entry.path, out, stem, cam_class, force, summary)
            record(outcome)
            if concepts:
                summary.concepts.append(concepts)
            if progress is not None:
                progress(entry.path)
    return summary


def _one(predictor, path: Path, out: Path, stem: str, cam_class: str | None, force: bool,
         summary: BatchSummary) -> tuple[Outcome, dict | None]:
    try:
        digest = sha256_file(path) if path.is_file() else None
        report = None if force else _finished(out, stem, digest)
        if report is not None:
            summary.resumed += 1
        else:
            report = write_outputs(predictor.predict(path, cam_class), out, stem, digest)
        return Outcome(str(path), "ok", _report_row(path, report, stem)), report.get("concepts")
    except (MnetError, OSError) as error:
        return Outcome(str(path), "failed", _row(path, "failed", error=str(error))), None
    except Exception as error:
        with open(out / ERRORS_LOG, "a") as log:
            log.write(f"{path}\n{traceback.format_exc()}\n")
        message = f"unexpected {type(error).__name__}: {error} (traceback in {ERRORS_LOG}; please report it)"
        return Outcome(str(path), "failed", _row(path, "failed", error=message)), None


def _finished(out: Path, stem: str, digest: str | None) -> dict | None:
    """The report of an image already done with this very input, when all its files are there."""
    report_path = out / f"{stem}.json"
    if digest is None or not report_path.exists():
        return None
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    complete = (out / f"{stem}.png").exists() and (out / f"{stem}.gradcampp.png").exists()
    return report if complete and report.get("input", {}).get("sha256") == digest else None


def _report_row(path: Path, report: dict, stem: str) -> dict:
    return _row(path, "ok", label=report["prediction"]["label"],
                probability=round(report["prediction"]["probability"], 4),
                explained_class=report["gradcampp"]["class"], flagged=report["uncertainty"]["flagged"],
                predictive_entropy=round(report["uncertainty"]["predictive"], 4), report=f"{stem}.json")


def _row(path, status, **values) -> dict:
    return {"input": str(path), "status": status, **{k: values.get(k, "") for k in SUMMARY_FIELDS[2:]}}
