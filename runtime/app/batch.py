"""`mnet run` over many files: one report and panel per image, a summary CSV, nothing lost on bad input.

Each image's files appear together (heatmap and panel first, the JSON report last, each written atomically), so
a report JSON means a complete set; the report is staged under a hidden name and made visible only after its
audit record is in the log, so every report on disk has its record, whatever stops the run. `summary.csv` gains a
row, flushed, as each image finishes: a killed run leaves every finished row. `run.json` records the model and
options; rerunning the same command skips the images whose reports are complete, logged and made from the same
input (its sha256 is in the report). One run at a time owns the folder (a lock); --force moves the earlier files
to `superseded/` instead of erasing them. Nothing about an image is kept in memory once its files are written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from runtime.audit import AuditLog, logged_reports, prediction_entry, sha256_bytes
from runtime.imageio import Found, collect_images, output_names, write_atomic
from runtime.manifest import sha256_file
from runtime.options import ImageOptions
from runtime.outputs import (
    OutputFolder,
    failure_message,
    interrupted,
    prepare_output,
    recorded_file,
    summary_writer,
)
from runtime.referral import review_reasons
from runtime.report import report_json
from runtime.report.render import Rendered, render_outputs
from runtime.stages import Item, Stages, drive

if TYPE_CHECKING:
    from runtime.result import Result

SUMMARY_FIELDS = ("input", "status", "label", "probability", "explained_class", "flagged", "review_reasons",
                  "predictive_entropy", "report", "error")
PENDING = ".pending"
SUPERSEDED = "superseded"
OUTPUT_SUFFIXES = (".json", ".png", ".gradcampp.png")
# Stems an input may not take: the batch's own files (run.json, tcav.json, summary.csv, audit.jsonl, errors.log).
RESERVED_STEMS = frozenset({"run", "tcav", "summary", "audit", "errors", SUPERSEDED})


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


def write_outputs(result: Result | Rendered, out: Path, stem: str,
                  input_sha256: str | None = None) -> tuple[dict, bytes]:
    """Heatmap and panel, then the report JSON last, staged under a hidden name (`pending_path`): the report
    becomes visible only when `Delivery` has logged it. A visible report JSON means a complete, logged set.
    Returns the report and the bytes staged (what its audit record hashes)."""
    rendered = result if isinstance(result, Rendered) else render_outputs(result)
    heatmap_name = f"{stem}.gradcampp.png"
    write_atomic(out / heatmap_name, rendered.heatmap_png)
    write_atomic(out / f"{stem}.png", rendered.panel_png)
    report = {**rendered.report, "gradcampp": {**rendered.report["gradcampp"], "heatmap": heatmap_name},
              "input": dict(rendered.report["input"])}
    if input_sha256 is not None:
        report["input"]["sha256"] = input_sha256
    data = report_json(report)
    write_atomic(pending_path(out, stem), data)
    return report, data


def pending_path(out: Path, stem: str) -> Path:
    return out / f".{stem}.json{PENDING}"


def recover_pending(out: Path, logged: set[str] | None) -> None:
    """Reports a killed run staged: delivered where their record made it into the log (`logged`: the report
    hashes it holds; None: no log is kept), dropped otherwise, so that their image is redone and logged."""
    for pending in out.glob(f".*.json{PENDING}"):
        final = out / pending.name[1:-len(PENDING)]
        if logged is None or sha256_file(pending) in logged:
            os.replace(pending, final)
        else:
            pending.unlink()


def supersede(out: Path, stems: list[str], audit: AuditLog | None) -> None:
    """--force: the earlier files of the images about to be redone move to `superseded/<UTC time>/`, and the
    log records where (their records stay checkable)."""
    earlier = [out / f"{stem}{suffix}" for stem in stems for suffix in OUTPUT_SUFFIXES
               if (out / f"{stem}{suffix}").is_file()]
    if not earlier:
        return
    folder = out / SUPERSEDED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = next(folder.with_name(f"{folder.name}-{n}") if n else folder for n in range(1000)
                  if not (folder.with_name(f"{folder.name}-{n}") if n else folder).exists())
    folder.mkdir(parents=True)
    moved = {}
    for path in earlier:
        os.replace(path, folder / path.name)
        if audit is not None and path.suffix == ".json":
            moved[os.path.relpath(path, audit.path.parent)] = os.path.relpath(folder / path.name, audit.path.parent)
    if audit is not None and moved:
        audit.supersede(moved)


def run_batch(predictor, inputs: list, out: Path, cam_class: str | None = None, progress=None,
              collected: tuple[list[Found], list] | None = None, options: dict | None = None,
              force: bool = False, workers: int = 1,
              open_audit: Callable[[], AuditLog] | None = None, engine: Engine | None = None) -> BatchSummary:
    """`collected`: the result of `collect_images(inputs, out)` when the caller already has it. `options`: what
    else changes the reports (recorded in run.json with the model). `workers` > 1 overlaps the stages of
    different images (`pipelined`); the outputs are the same as one at a time. `engine`: what explains the
    images instead of this process's threads (`runtime.app.ray_engine`: actors on a Ray cluster); this process
    still writes every file and audit record. `open_audit` opens the audit log once the output folder is
    checked, before the first image (a log that cannot be written stops the run).

    Each report is staged, then logged, then made visible (`deliver`), in order, in every mode: a report on
    disk always has its record, on Ctrl-C and after a kill."""
    out = Path(out)
    run = {"model_sha256": predictor.model_info["sha256"], "model": predictor.model_info["file"],
           "options": {"cam_class": cam_class, **(options or {})}}
    with OutputFolder(out):
        prepare_output(out, run, force)
        audit = open_audit() if open_audit is not None else None
        # Read once: recovery and superseding add no report record.
        logged = logged_reports(audit.path) if audit is not None else None
        recover_pending(out, logged)
        found, skipped = collected or collect_images(inputs, out)
        requested = predictor.class_index(cam_class) if cam_class else None
        jobs = [Job(entry.path, options=ImageOptions(cam_class), requested=requested, path=entry.path, stem=stem)
                for entry, stem in zip(found, output_names(found, RESERVED_STEMS))]
        if force:
            supersede(out, [job.stem for job in jobs], audit)
        engine = engine or partial(stream, workers=workers)
        return _explain_jobs(predictor, jobs, skipped, out, cam_class, progress, force, engine, audit, logged)


def _explain_jobs(predictor, jobs, skipped, out, cam_class, progress, force, engine, audit, logged):
    summary = BatchSummary()
    delivered = Delivery(predictor, audit, cam_class)
    with summary_writer(out, SUMMARY_FIELDS) as write:

        def record(outcome: Outcome) -> None:
            summary.outcomes.append(outcome)
            write(outcome.row)

        def conclude(job: Job) -> None:
            if job.concluded:
                return
            delivered(job)
            record(job.outcome)
            job.concluded = True
            summary.resumed += job.resumed
            if job.concepts:
                summary.concepts.append(job.concepts)

        for path, reason in skipped:
            status, _, message = reason.partition(": ")
            record(Outcome(str(path), status, _row(path, status, error=message)))
        flowing = engine(BatchStages(predictor.stages, out, force, logged), jobs)
        concluded = 0
        try:
            for job in flowing:
                conclude(job)
                concluded += 1
                if progress is not None:
                    progress(job.path)
        except KeyboardInterrupt:
            _ignore_further_interrupts()
            flowing.close()  # lets the images in flight finish writing
            for job in jobs[concluded:]:
                job.interrupted = True
                if job.outcome is not None and job.outcome.status == "ok":
                    conclude(job)
            raise interrupted(sum(outcome.status == "ok" for outcome in summary.outcomes), len(jobs), out) from None
    return summary


def _ignore_further_interrupts() -> None:
    """A second Ctrl-C while the images in flight are delivered would cut a delivery short."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class Delivery:
    """Makes a staged report visible after its audit record is written (each image explained in this run, not
    those resumed). Idempotent: a report whose record is already in the log is not logged again."""

    def __init__(self, predictor, audit: AuditLog | None, cam_class: str | None):
        self.predictor = predictor
        self.audit = audit
        self.options = predictor.audit_options(ImageOptions(cam_class)) if audit is not None else None

    def __call__(self, job: Job) -> None:
        if job.outcome.status != "ok" or job.resumed or job.delivered:
            return
        pending = pending_path(job.out, job.stem)
        if self.audit is not None:
            data = job.staged
            already = job.interrupted and sha256_bytes(data) in logged_reports(self.audit.path)
            if not already:
                self.audit.record(prediction_entry(
                    data, self.predictor.manifest, self.options,
                    report_file=os.path.relpath(job.out / f"{job.stem}.json", self.audit.path.parent),
                    input_sha256=job.digest, input_name=str(job.path) if self.audit.identity.log_names else None))
        os.replace(pending, job.out / f"{job.stem}.json")
        job.delivered = True


@dataclass
class Job(Item):
    """One input of the batch: the stages' `Item`, with its output name, input hash and summary row (`outcome`:
    set once it is done: written, resumed or failed)."""

    path: Path = Path()
    stem: str = ""
    out: Path | None = None
    digest: str | None = None
    outcome: Outcome | None = None
    concepts: dict | None = None
    resumed: bool = False
    delivered: bool = False
    concluded: bool = False
    interrupted: bool = False  # delivered after Ctrl-C: its record may already be in the log
    staged: bytes | None = None  # the report's bytes, written under its hidden name until delivered


class BatchStages:
    """`mnet run`'s stages around a model's (`inner`: a predictor's, or a server's): `prepare` first hashes the
    input and takes its finished report when it has one (resume); `explain` then writes the image's files (the
    report staged until `Delivery` logs it). An unexpected error fails its image's row, never the batch."""

    def __init__(self, inner: Stages, out: Path, force: bool, logged: set[str] | None):
        self.inner, self.out, self.force, self.logged = inner, out, force, logged

    def prepare(self, job: Job) -> Job:
        if self.settled(job):
            return job
        try:
            return self.inner.prepare(job)
        except Exception as error:
            return _fail(job, error)

    def settled(self, job: Job) -> bool:
        """Whether the image needs no explaining: resumed (`resume`), or failed while that was checked."""
        try:
            return self.resume(job)
        except Exception as error:
            _fail(job, error)
            return True

    def resume(self, job: Job) -> bool:
        """Whether the image is done already: its files are complete, logged and made from this very input (the
        input is hashed only where a report is there to compare with)."""
        job.out = self.out
        if self.force or not (self.out / f"{job.stem}.json").is_file():
            return False
        job.digest = sha256_file(job.path) if job.path.is_file() else None
        report = _finished(self.out, job.stem, job.digest, self.logged)
        if report is None:
            return False
        job.resumed = True
        job.result = _done(job, report)
        return True

    def run_network(self, jobs: list[Job]) -> None:
        try:
            self.inner.run_network(jobs)
        except Exception as error:
            for job in jobs:
                if job.outcome is None:
                    _fail(job, error)

    def explain(self, job: Job) -> Job:
        if job.outcome is None:
            try:
                self.inner.explain(job)
                if isinstance(job.result, Exception):
                    raise job.result
                deliver_rendered(job, job.result)
            except Exception as error:
                _fail(job, error)
        job.result = job.prepared = job.outputs = job.measured = None
        return job


# What explains a batch's jobs: yields each once its files are written (or it failed), in the jobs' order; closing
# it lets the images in flight finish. `stream` is this process's; runtime.app.ray_engine spreads them over Ray.
Engine = Callable[[BatchStages, list[Job]], Iterator[Job]]


def deliver_rendered(job: Job, result: Result | Rendered) -> Job:
    """The image's heatmap and panel written, its report staged for `Delivery`, its summary row made."""
    report, job.staged = write_outputs(result, job.out, job.stem, job.digest)
    return _done(job, report)


def stream(stages: Stages, jobs: list[Job], workers: int):
    """The jobs through the stages, in order: one at a time, or with `workers` threads decoding the next images
    and explaining and writing the previous ones while the network runs (at most 2 x workers in flight). Closing
    it lets the images in flight finish."""
    if workers <= 1:
        yield from drive(stages, jobs)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from drive(stages, jobs, pool, ahead=2 * workers)


def _done(job: Job, report: dict) -> Job:
    job.digest = report["input"].get("sha256", job.digest)
    job.outcome = Outcome(str(job.path), "ok", _report_row(job.path, report, job.stem))
    job.concepts = report.get("concepts")
    return job


def _fail(job: Job, error: Exception) -> Job:
    return fail_job(job, failure_message(error, job.out, job.path), error)


def fail_job(job: Job, message: str, error: Exception | None = None) -> Job:
    """The image's `failed` summary row, saying `message`."""
    job.outcome = Outcome(str(job.path), "failed", _row(job.path, "failed", error=message))
    job.result = error
    return job


def _finished(out: Path, stem: str, digest: str | None, logged: set[str] | None = None) -> dict | None:
    """The report of an image already done with this very input, when all its files are there and, where a
    log is kept (`logged`: the report hashes it holds), its record is in the log; else the image is redone."""
    recorded = recorded_file(out / f"{stem}.json", digest)
    if recorded is None:
        return None
    data, report = recorded
    if logged is not None and sha256_bytes(data) not in logged:
        return None
    complete = (out / f"{stem}.png").exists() and (out / f"{stem}.gradcampp.png").exists()
    return report if complete and report.get("input", {}).get("sha256") == digest else None


def _report_row(path: Path, report: dict, stem: str) -> dict:
    return _row(path, "ok", label=report["prediction"]["label"],
                probability=round(report["prediction"]["probability"], 4),
                explained_class=report["gradcampp"]["class"], flagged=report["uncertainty"]["flagged"],
                review_reasons=review_reasons(report["referral"]),
                predictive_entropy=round(report["uncertainty"]["predictive"], 4), report=f"{stem}.json")


def _row(path, status, **values) -> dict:
    return {"input": str(path), "status": status, **{k: values.get(k, "") for k in SUMMARY_FIELDS[2:]}}
