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
import os
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from runtime.audit import AuditLog, prediction_entry
from runtime.errors import ConfigError, Interrupted, MnetError
from runtime.imageio import Found, collect_images, output_names, write_atomic
from runtime.manifest import sha256_file
from runtime.options import ImageOptions
from runtime.render import Rendered, render_outputs

if TYPE_CHECKING:
    from runtime.result import Result

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


def write_outputs(result: Result | Rendered, out: Path, stem: str, input_sha256: str | None = None) -> dict:
    """Heatmap and panel, then the report JSON last: a JSON on disk means a complete set of outputs."""
    rendered = result if isinstance(result, Rendered) else render_outputs(result)
    heatmap_name = f"{stem}.gradcampp.png"
    write_atomic(out / heatmap_name, rendered.heatmap_png)
    write_atomic(out / f"{stem}.png", rendered.panel_png)
    report = {**rendered.report, "gradcampp": {**rendered.report["gradcampp"], "heatmap": heatmap_name},
              "input": dict(rendered.report["input"])}
    if input_sha256 is not None:
        report["input"]["sha256"] = input_sha256
    write_atomic(out / f"{stem}.json", report_file_bytes(report))
    return report


def report_file_bytes(report: dict) -> bytes:
    """A report as `mnet run` writes it (and its audit record hashes it)."""
    return json.dumps(report, indent=2).encode()


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
              force: bool = False, workers: int = 1,
              open_audit: Callable[[], AuditLog] | None = None) -> BatchSummary:
    """`collected`: the result of `collect_images(inputs, out)` when the caller already has it. `options`: what
    else changes the reports (recorded in run.json with the model). `workers` > 1 overlaps the stages of
    different images (`pipelined`); the outputs are the same as one at a time. `open_audit` opens the audit log
    once the output folder is checked, before the first image (a log that cannot be written stops the run)."""
    out = Path(out)
    run = {"model_sha256": predictor.model_info["sha256"], "model": predictor.model_info["file"],
           "options": {"cam_class": cam_class, **(options or {})}}
    prepare_output(out, run, force)
    audit = open_audit() if open_audit is not None else None
    found, skipped = collected or collect_images(inputs, out)
    requested = predictor.class_index(cam_class) if cam_class else None
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
        jobs = [Job(entry.path, stem) for entry, stem in zip(found, output_names(found))]
        stream = pipelined(predictor, jobs, out, requested, force, workers) if workers > 1 else \
            (_finish(predictor, _infer(predictor, _start(predictor, job, out, force), requested), requested)
             for job in jobs)
        if audit is not None:
            stream = _logged(stream, predictor, audit, cam_class)
        recorded = 0
        try:
            for job in stream:
                record(job.outcome)
                recorded += 1
                summary.resumed += job.resumed
                if job.concepts:
                    summary.concepts.append(job.concepts)
                if progress is not None:
                    progress(job.path)
        except KeyboardInterrupt:
            stream.close()  # lets the images in flight finish writing
            for job in jobs[recorded:]:
                report = _finished(out, job.stem, job.digest)
                if report is not None:
                    record(_done(job, report).outcome)
            done = sum(outcome.status == "ok" for outcome in summary.outcomes)
            raise Interrupted(f"interrupted after {done} of {len(jobs)} images (their reports and summary.csv rows "
                              f"are in {out}); rerun the same command to resume") from None
    return summary


@dataclass
class Job:
    """One image on its way through the stages; `outcome` is set once it is done (written, resumed or failed)."""

    path: Path
    stem: str
    out: Path | None = None
    digest: str | None = None
    prepared: object = None
    outputs: dict | None = None
    measured: object = None
    outcome: Outcome | None = None
    concepts: dict | None = None
    resumed: bool = False


def _logged(stream, predictor, audit: AuditLog, cam_class: str | None):
    """Each image explained in this run (not those resumed) gets its audit record once its files are written."""
    try:
        for job in stream:
            if job.outcome.status == "ok" and not job.resumed:
                report_path = job.out / job.outcome.row["report"]
                audit.record(prediction_entry(
                    report_path.read_bytes(), predictor.manifest, predictor.audit_options(ImageOptions(cam_class)),
                    report_file=os.path.relpath(report_path, audit.path.parent), input_sha256=job.digest,
                    input_name=str(job.path) if audit.identity.log_names else None))
            yield job
    finally:
        stream.close()


def pipelined(predictor, jobs: list[Job], out: Path, requested: int | None, force: bool, workers: int):
    """Decode and preprocess the next images and explain and write the previous ones on `workers` threads while
    the backend runs the current one; at most 2 x workers images are in flight, and jobs come back in order."""
    depth = 2 * workers
    with ThreadPoolExecutor(workers) as pool:
        started: deque[Future] = deque()
        finishing: deque[Future] = deque()
        pending = iter(jobs)
        for job in pending:
            started.append(pool.submit(_start, predictor, job, out, force))
            if len(started) >= depth:
                break
        while started:
            job = _infer(predictor, started.popleft().result(), requested)
            following = next(pending, None)
            if following is not None:
                started.append(pool.submit(_start, predictor, following, out, force))
            finishing.append(pool.submit(_finish, predictor, job, requested))
            while finishing and (len(finishing) > depth or finishing[0].done()):
                yield finishing.popleft().result()
        while finishing:
            yield finishing.popleft().result()


def _start(predictor, job: Job, out: Path, force: bool) -> Job:
    """Hash the input; take its finished report when there is one, else decode and preprocess it."""
    job.out = out
    try:
        job.digest = sha256_file(job.path) if job.path.is_file() else None
        report = None if force else _finished(out, job.stem, job.digest)
        if report is not None:
            job.resumed = True
            return _done(job, report)
        job.prepared = predictor.prepare(job.path)
    except Exception as error:
        _fail(job, error)
    return job


def _infer(predictor, job: Job, requested: int | None) -> Job:
    """The network, with ABCD beside it (`Predictor.run_network`, as `predict` and the server run it)."""
    if job.outcome is None:
        try:
            job.outputs, job.measured = predictor.run_network(job.prepared, requested)
        except Exception as error:
            _fail(job, error)
    return job


def _finish(predictor, job: Job, requested: int | None) -> Job:
    """Explain and write; nothing about the image is kept afterwards but its summary row and concept scores."""
    if job.outcome is None:
        try:
            if isinstance(job.measured, Exception):
                raise job.measured
            result = predictor.explain(job.prepared, job.outputs, requested, measured=job.measured)
            _done(job, write_outputs(result, job.out, job.stem, job.digest))
        except Exception as error:
            _fail(job, error)
    job.prepared = job.outputs = job.measured = None
    return job


def _done(job: Job, report: dict) -> Job:
    job.outcome = Outcome(str(job.path), "ok", _report_row(job.path, report, job.stem))
    job.concepts = report.get("concepts")
    return job


def _fail(job: Job, error: Exception) -> None:
    job.outcome = Outcome(str(job.path), "failed", _row(job.path, "failed", error=failure_message(error, job.out,
                                                                                                  job.path)))


def failure_message(error: Exception, out: Path, path: Path) -> str:
    """What a summary row says of an image that failed; an unexpected error's traceback goes to ERRORS_LOG."""
    if isinstance(error, (MnetError, OSError)):
        return str(error)
    with open(out / ERRORS_LOG, "a") as log:
        log.write(f"{path}\n{''.join(traceback.format_exception(error))}\n")
    return f"unexpected {type(error).__name__}: {error} (traceback in {ERRORS_LOG}; please report it)"


def recorded_output(path: Path, digest: str | None) -> dict | None:
    """The JSON an earlier run wrote at `path`, when there is one to compare with this input (`digest`)."""
    if digest is None or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finished(out: Path, stem: str, digest: str | None) -> dict | None:
    """The report of an image already done with this very input, when all its files are there."""
    report = recorded_output(out / f"{stem}.json", digest)
    if report is None:
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
