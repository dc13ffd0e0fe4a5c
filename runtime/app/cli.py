"""`mnet`: the app and the runtime's commands (torch-free): run, abcde, bench, serve, doctor. The training
package adds its commands through the `mnet.commands` entry point."""

from __future__ import annotations

import json
import os
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from runtime.app.console import (
    AuditMaxMbOpt,
    AuditNewOpt,
    BackendName,
    BackendOpt,
    DeviceIdOpt,
    ForceScaleOpt,
    JsonOpt,
    LesionAtOpt,
    LogNamesOpt,
    MmOpt,
    OperatorOpt,
    TrustedKeysOpt,
    console,
    fail,
    guarded,
    progress_bar,
    require_named_inputs,
    run_app,
    stdout,
)
from runtime.errors import ConfigError, MnetError
from runtime.options import check_plausible_scale
from runtime.serving import DEFAULT_MAX_REQUEST_MB


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


def run(
    inputs: Annotated[list[Path], typer.Argument(metavar="IMAGES_OR_FOLDERS_OR_LIST",
                                                 help="Image files and/or folders of images, or a list of image "
                                                      "paths: a .csv (a 'path' column) or .parquet file.")],
    model: Annotated[Optional[Path], typer.Option(help="Exported bundle: model.onnx (or a TensorRT .engine). "
                                                  "Not with --server.")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for reports, summary.csv.")] = Path("mnet_out"),
    mc_samples: Annotated[Optional[int], typer.Option(min=1, help="MC dropout samples T (default: the "
                                                      "bundle's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the dropout masks: same seed, same numbers.")] = 0,
    backend: BackendOpt = BackendName.ort_cpu,
    class_name: Annotated[Optional[str], typer.Option("--class", help="Explain this class instead of the "
                                                      "predicted one (e.g. MEL).")] = None,
    mm_per_px: MmOpt = None,
    force_scale: ForceScaleOpt = False,
    lesion_at: LesionAtOpt = None,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads for ONNX Runtime (0: all).")] = 0,
    abcde: Annotated[bool, typer.Option(help="Run the ABCD analysis.")] = True,
    force: Annotated[bool, typer.Option(help="Redo every image, also into a folder holding another run's "
                                        "reports (by default finished images are skipped).")] = False,
    verify: Annotated[bool, typer.Option(help="Check the bundle against its sidecar's sha256 and manifest "
                                         "(--no-verify runs it unchecked; the reports record that).")] = True,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Threads that decode and preprocess the next images and explain and write the previous ones "
                    "while the model runs (default: the machine's cores; 1: one image at a time). The outputs are "
                    "the same.")] = None,
    server: Annotated[Optional[str], typer.Option(help="Send the images to a running `mnet serve` (or Triton with "
                                                  "the melanomanet model) instead: http://HOST:8000 or "
                                                  "grpc://HOST:8001. The server's bundle and settings apply.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once with --server.")] = 4,
    audit: Annotated[Optional[Path], typer.Option(help="Append one hash-chained record per prediction to this log "
                                                  "(default: OUT/audit.jsonl; docs/audit.md). With --server, the "
                                                  "server keeps the log.")] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Write no audit log.")] = False,
    operator: OperatorOpt = None,
    device_id: DeviceIdOpt = None,
    log_names: LogNamesOpt = False,
    audit_new: AuditNewOpt = False,
    audit_max_mb: AuditMaxMbOpt = None,
    trusted_keys: TrustedKeysOpt = None,
    engine: Annotated[EngineName, typer.Option(help="What explains the images: this process's threads (local), or "
                                               "a pool of actors on Ray (ray: a local Ray, or a cluster with "
                                               "--address; docs/ray.md). The files are the same.")] = EngineName.local,
    address: Annotated[Optional[str], typer.Option(help="With --engine ray: the Ray cluster to join (auto, or "
                                                   "HOST:6379; default: start a Ray on this machine).")] = None,
    actors: Annotated[Optional[int], typer.Option(min=1, help="With --engine ray: actors, each with its own "
                                                  "verified copy of the model (default: one per CPU, or per "
                                                  "GPU share with --gpus-per-actor).")] = None,
    gpus_per_actor: Annotated[float, typer.Option(min=0, help="With --engine ray: GPUs each actor reserves (0.5: "
                                                  "two actors share a GPU; use with --backend ort-cuda or "
                                                  "trt).")] = 0.0,
):
    """Explained predictions (probabilities, MC uncertainty, GradCAM++, ABCD): a JSON report and PNG panel each.
    Rerunning into the same folder skips the images already done."""
    require_named_inputs(inputs)
    guarded(lambda: check_plausible_scale(mm_per_px, force_scale))
    ray_only = {"--address": address is not None, "--actors": actors is not None,
                "--gpus-per-actor": gpus_per_actor != 0}
    if engine != EngineName.ray and any(ray_only.values()):
        fail(ConfigError(f"{', '.join(name for name, used in ray_only.items() if used)}: for --engine ray"))
    if engine == EngineName.ray and (workers is not None or server is not None):
        fail(ConfigError("--engine ray: its actors explain the images; leave out --workers and --server "
                         "(use --actors)"))
    if server is not None:
        local_only = {"--model": model is not None, "--mc-samples": mc_samples is not None, "--seed": seed != 0,
                      "--backend": backend != BackendName.ort_cpu, "--threads": threads != 0, "--no-abcde": not abcde,
                      "--no-verify": not verify, "--workers": workers is not None,
                      "--audit (the server keeps the log: mnet serve --audit)": audit is not None,
                      "--operator": operator is not None, "--device-id": device_id is not None,
                      "--log-names": log_names, "--audit-new": audit_new, "--audit-max-mb": audit_max_mb is not None,
                      "--trusted-keys (mnet serve --trusted-keys)": trusted_keys is not None}
        given = [name for name, used in local_only.items() if used]
        if given:
            fail(ConfigError(f"{', '.join(given)}: set on the server (mnet serve), not with --server"))
        return _run_served(inputs, out, server, concurrency, class_name, mm_per_px, lesion_at, force)
    if model is None:
        fail(ConfigError("give --model model.onnx (or --server URL)"))
    from runtime.predictor import Predictor

    settings = {"backend": backend.value, "mc_samples": mc_samples, "seed": seed, "threads": threads, "abcde": abcde,
                "mm_per_px": mm_per_px, "verify": verify, "lesion_at": lesion_at, "trusted_keys": trusted_keys}
    ray_engine = None
    try:
        if engine == EngineName.ray:
            model, settings, ray_engine = _ray_engine(model, settings, class_name, address, actors, gpus_per_actor)
        predictor = Predictor(model, **settings)
        if class_name:
            predictor.class_index(class_name)
    except MnetError as error:
        fail(error)
    if predictor.manifest.is_demo:
        console.print("[yellow]demo weights trained on synthetic lesions: outputs are not about real lesions and "
                      "not for diagnosis[/yellow]")
    if not verify:
        console.print("[yellow]--no-verify: the bundle was not checked against its sidecar[/yellow]")
    from runtime.imageio import collect_images

    open_log = None if no_audit else lambda: _open_audit(audit or out / "audit.jsonl", operator, device_id, log_names,
                                                         audit_new, audit_max_mb)
    collected = guarded(lambda: collect_images(inputs, out))
    options = {"mc_samples": predictor.mc_samples, "seed": seed, "mm_per_px": mm_per_px, "abcde": abcde,
               "lesion_at": list(lesion_at) if lesion_at else None,
               "backend": backend.value, "verified": verify}
    summary = _explain_all(predictor, inputs, out, class_name, collected, options, force,
                           workers or os.cpu_count() or 1, open_log, ray_engine)
    if predictor.concepts is not None:
        from runtime.concepts import tcav_scores
        from runtime.imageio import write_atomic

        write_atomic(out / "tcav.json", json.dumps(tcav_scores(summary.concepts), indent=2).encode())
    if summary.failed:
        raise typer.Exit(1)


def _ray_engine(model: Path, settings: dict, class_name, address, actors, gpus_per_actor):
    """The bundle as every node reads it, the driver's own predictor settings (it only checks the bundle and
    keeps the log: ONNX Runtime on CPU for an ONNX bundle, so the head node needs no GPU) and the engine, whose
    actors each reserve --threads CPUs (default 1) and run the model with the settings asked for."""
    from runtime.app.ray_engine import PredictorSpec, RayEngine, RaySettings

    cpus = settings["threads"] or 1
    ray_settings = RaySettings(address, actors, gpus_per_actor, cpus)
    model = model.absolute()
    engine = RayEngine(PredictorSpec(model, {**settings, "threads": cpus}), ray_settings, class_name)
    driver = {**settings, "threads": 1, "backend": "ort-cpu" if model.suffix == ".onnx" else settings["backend"]}
    return model, driver, engine


def _open_audit(path: Path, operator, device_id, log_names, audit_new, audit_max_mb):
    """The run's audit log, opened (and checked) before the first image; its start record carries this
    environment's SBOM sha256."""
    from runtime.audit import AuditLog, Identity
    from runtime.audit.sbom import sbom_sha256

    return AuditLog(path, Identity(operator, device_id, log_names, sbom_sha256()),
                    int(audit_max_mb * 1e6) if audit_max_mb else None, audit_new)


def _run_served(inputs, out, server, concurrency, class_name, mm_per_px, lesion_at, force):
    from runtime.imageio import collect_images
    from runtime.serving.client import ServedModel

    try:
        served = ServedModel(server, class_name, mm_per_px, lesion_at)
    except MnetError as error:
        fail(error)
    if served.is_demo:
        console.print("[yellow]the server runs demo weights trained on synthetic lesions: outputs are not about real "
                      "lesions and not for diagnosis[/yellow]")
    options = {"server": server, "mm_per_px": mm_per_px, "lesion_at": list(lesion_at) if lesion_at else None}
    summary = _explain_all(served, inputs, out, class_name, guarded(lambda: collect_images(inputs, out)), options,
                           force, concurrency)
    if summary.failed:
        raise typer.Exit(1)


def _explain_all(predictor, inputs, out, class_name, collected, options, force, workers, open_audit=None,
                 engine=None):
    """The batch with a progress bar and the summary table; the summary."""
    from runtime.app.batch import run_batch

    with progress_bar(with_status=False) as bar:
        task = bar.add_task("explaining", total=len(collected[0]))
        try:
            summary = run_batch(predictor, inputs, out, class_name, progress=lambda path: bar.advance(task),
                                collected=collected, options=options, force=force, workers=workers,
                                open_audit=open_audit, engine=engine)
        except MnetError as error:
            bar.stop()
            fail(error)
    _summary_table(summary.outcomes)
    counts = {status: sum(o.status == status for o in summary.outcomes) for status in ("ok", "failed", "skipped")}
    console.print(f"{counts['ok']} ok ({summary.resumed} already done), {counts['failed']} failed, "
                  f"{counts['skipped']} skipped; reports in {out} (summary.csv)")
    return summary


STATUS_STYLE = {"ok": "[green]ok[/green]", "skipped": "[yellow]skipped[/yellow]"}


def _summary_table(outcomes):
    table = Table("input", "status", "label", "p", "heatmap of", "review: why", "note")
    for column in table.columns:
        column.overflow = "fold"
    table.columns[0].min_width = 16
    for outcome in outcomes:
        row = outcome.row
        status = STATUS_STYLE.get(row["status"], "[red]failed[/red]")
        table.add_row(escape(row["input"]), status,
                      str(row["label"]), str(row["probability"]), str(row["explained_class"]),
                      f"[red]{escape(row['review_reasons'] or 'yes')}[/red]" if row["flagged"] is True else "",
                      escape(str(row["error"])))
    console.print(table)


def abcde(
    inputs: Annotated[list[Path], typer.Argument(metavar="IMAGES_OR_FOLDERS", help="A dermoscopic image or a "
                                                 "clinical photo; or several, or folders of them, with -o.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Folder for <name>.json, <name>.mask.png, "
                                                "<name>.png per image and summary.csv (needed for more than one "
                                                "image; rerunning skips the images done).")] = None,
    prior: Annotated[Optional[Path], typer.Option(help="The same lesion at an earlier visit (E; one image).")] = None,
    mm_per_px: MmOpt = None,
    force_scale: ForceScaleOpt = False,
    lesion_at: LesionAtOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the measurements as JSON to this file "
                                                     "('-': to standard output instead of the summary).")] = None,
    png_out: Annotated[Optional[Path], typer.Option("--png", help="Write the picture here: the ABCD overlay, or "
                                                    "with --prior both visits aligned and the changes.")] = None,
    force: Annotated[bool, typer.Option(help="With -o: redo every image (by default finished images are "
                                        "skipped).")] = False,
):
    """ABCD(E) criteria measured in OpenCV: segmentation, asymmetry, border, colours, diameter, evolution.
    One image: a table (or --json, --png). With -o: files per image and summary.csv."""
    require_named_inputs(inputs)
    guarded(lambda: check_plausible_scale(mm_per_px, force_scale))
    if out is None and len(inputs) == 1 and not inputs[0].is_dir():
        return _abcde_one(inputs[0], prior, mm_per_px, lesion_at, json_out, png_out)
    single_only = {"--prior": prior is not None, "--lesion-at": lesion_at is not None,
                   "--json": json_out is not None, "--png": png_out is not None}
    given = [name for name, used in single_only.items() if used]
    if given:
        fail(ConfigError(f"{', '.join(given)}: for one image without -o; a batch writes <name>.json and "
                         "<name>.png per image into -o OUT"))
    if out is None:
        fail(ConfigError("several images: give -o OUT, the folder for their files and summary.csv"))
    _abcde_many(inputs, out, mm_per_px, force)


def _abcde_one(image, prior, mm_per_px, lesion_at, json_out, png_out):
    from runtime.abcde.api import analyze_files
    from runtime.imageio import write_atomic
    from runtime.png import encode_png

    try:
        result, overlay = analyze_files(image, prior, mm_per_px, lesion_at)
    except MnetError as error:
        fail(error)
    text = json.dumps(result, indent=2)
    if json_out == Path("-"):
        print(text)
    else:
        stdout.print(abcde_table(result))
        if json_out:
            write_atomic(json_out, text.encode())
    if png_out:
        write_atomic(png_out, encode_png(overlay))
    evolution = result.get("evolution")
    if evolution is not None and not evolution["registration"]["registered"]:
        console.print(f"[red]error:[/red] {escape(str(prior))} was not compared with {escape(str(image))}: "
                      f"{escape(evolution['registration']['reason'])}", soft_wrap=True)
        raise typer.Exit(1)


def _abcde_many(inputs, out, mm_per_px, force):
    from runtime.abcde.batch import analyze_batch
    from runtime.imageio import collect_images

    with progress_bar(with_status=False) as bar:
        collected = collect_images(inputs, out)
        task = bar.add_task("measuring", total=len(collected[0]))
        try:
            done = analyze_batch(inputs, out, mm_per_px, force, progress=lambda path: bar.advance(task),
                                 collected=collected)
        except MnetError as error:
            bar.stop()
            fail(error)
    counts = Counter(outcome.status for outcome in done)
    resumed = sum(outcome.resumed for outcome in done)
    said = ", ".join(f"{counts[status]} {status.replace('_', ' ')}" for status in
                     ("measured", "unreliable", "no_lesion", "failed", "skipped") if counts[status])
    console.print(f"{said} ({resumed} already done); files in {out} (summary.csv)")
    if counts["failed"]:
        raise typer.Exit(1)


def abcde_table(result: dict) -> Table:
    """The readable summary: each criterion's reading (as on the panel), then the changes since the prior."""
    from runtime.abcde.overlay import change_lines
    from runtime.draw import AMBER
    from runtime.report.panel import abcd_lines

    table = Table("", "reading", title=f"ABCD(E) of {Path(result['image']).name}", show_lines=False,
                  caption="Measured, not diagnosed: research software, not a medical device.")
    table.columns[1].overflow = "fold"
    for key, line, colour in abcd_lines(result)[1:]:
        table.add_row(key, f"[yellow]{escape(line)}[/yellow]" if colour == AMBER else escape(line))
    if "evolution" in result:
        for number, line in enumerate(change_lines(result["evolution"])):
            table.add_row("E" if number == 0 else "", escape(line))
    return table


def bench(
    model: Annotated[Optional[Path], typer.Option(help="Exported bundle: model.onnx (or a TensorRT .engine).")] = None,
    backend: BackendOpt = BackendName.ort_cpu,
    mc_samples: Annotated[Optional[int], typer.Option(min=1, help="MC dropout samples T (default: the "
                                                      "bundle's).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder of images to time (default: a drawn lesion).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Batch size for the throughput figure.")] = 8,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repetitions per figure.")] = 20,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads for ONNX Runtime (0: all).")] = 0,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads of the pipelined run figure (default: "
                                                   "the cores).")] = None,
    json_out: JsonOpt = None,
    server: Annotated[Optional[str], typer.Option(help="Load-test a running server instead (http://HOST:8000 or "
                                                  "grpc://HOST:8001): whole explained predictions.")] = None,
    concurrency: Annotated[str, typer.Option(help="With --server: clients at once, one figure per value "
                                             "(comma-separated).")] = "1,4,16",
    requests: Annotated[int, typer.Option(min=1, help="With --server: requests per concurrency.")] = 100,
    precision: Annotated[bool, typer.Option("--precision", help="Time the FP32 bundle and the reduced-precision "
                                            "bundles `mnet-export quantize` made beside it (and BF16 under "
                                            "OpenVINO) as whole explained predictions, and recommend the fastest "
                                            "that met the fidelity targets.")] = False,
):
    """Latency per stage of whole explained predictions from image files (report included, p50/p95/p99),
    mnet run's images per second one at a time and pipelined, inference-only images per second, peak memory.
    With --server: p50/p95/p99 latency and images per second of a running server per concurrency."""
    if server is not None:
        return _bench_server(server, concurrency, requests, images, json_out)
    if model is None:
        fail(ConfigError("give --model model.onnx (or --server URL)"))
    if precision:
        return _bench_precision(model, mc_samples, images, repeats, json_out)
    from runtime.app.bench import bench as run_bench

    try:
        report = run_bench(model, backend.value, mc_samples, images, batch, repeats, threads, workers)
    except MnetError as error:
        fail(error)
    table = Table("stage", "p50 ms", "p95 ms", "p99 ms",
                  title=f"{model.name} on {report['backend']}, T={report['mc_samples']}")
    for stage, figures in report["stages_ms"].items():
        table.add_row(stage, f"{figures['p50']:.2f}", f"{figures['p95']:.2f}", f"{figures['p99']:.2f}")
    stdout.print(table)
    stdout.print(f"stages: {report['stages_include']}")
    said = None
    for name, figures in report["throughput"].items():
        scope = "" if figures["includes"] == said else f" ({figures['includes']})"
        said = figures["includes"]
        stdout.print(f"{name}: {figures['images_per_s']:.1f} images/s{scope} {figures.get('note', '')}")
    stdout.print(f"peak resident memory: {report['peak_rss_mb']:.0f} MB")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


def _bench_precision(model: Path, mc_samples: Optional[int], images: Optional[Path], repeats: int,
                     json_out: Optional[Path]):
    from tempfile import TemporaryDirectory

    from runtime.app.bench import sample_files
    from runtime.app.precision import compare_precisions
    from runtime.hardware import accelerates_bf16

    with console.status("timing each precision (whole explained predictions)"), TemporaryDirectory() as folder:
        report = guarded(lambda: compare_precisions(model, sample_files(images, Path(folder)), repeats, mc_samples))
    table = Table("bundle", "backend", "precision", "p50 ms", "x FP32", "fidelity", title=f"{model.name}: "
                  f"precisions on this machine (CPU: {report['cpu_summary']})")
    for row in report["rows"]:
        verdict = ("reference" if row["precision"] == "fp32" else "meets the targets" if row["meets_targets"] else
                   "not measured" if not row["fidelity_measured"] else "misses: " + "; ".join(row["failed"]))
        table.add_row(row["bundle"], row["backend"], row["precision"], f"{row['p50_ms']:.1f}",
                      f"{row['speedup_over_ort_fp32']:.2f}", verdict)
    stdout.print(table)
    best = report["recommended"]
    stdout.print(f"recommended here: {best['precision']} on {best['backend']} ({best['bundle']}, "
                 f"{best['p50_ms']:.1f} ms, {best['speedup_over_ort_fp32']:.2f}x FP32 on ONNX Runtime), the "
                 "fastest that met the fidelity targets", soft_wrap=True)
    if any(row["backend"] == "openvino-bf16" for row in report["rows"]) and not accelerates_bf16():
        stdout.print("the BF16 rows ran in FP32: this CPU lacks avx512_bf16 and amx_bf16, and OpenVINO computes "
                     "FP32 in their place", soft_wrap=True)
    unmeasured = [row for row in report["rows"] if not row["fidelity_measured"]]
    if unmeasured:
        stdout.print(f"BF16 has no fidelity report yet: mnet-export quantize {model} --precision bf16 --eval DIR",
                     soft_wrap=True)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


def _bench_server(server: str, concurrency: str, requests: int, images: Optional[Path], json_out: Optional[Path]):
    from runtime.app.bench import sample_images
    from runtime.serving.client import load_test

    try:
        levels = [int(part) for part in concurrency.split(",")]
    except ValueError:
        fail(ConfigError(f"--concurrency {concurrency!r}: give whole numbers separated by commas, e.g. 1,4,16"))
    if not levels or min(levels) < 1:
        fail(ConfigError(f"--concurrency {concurrency!r}: each value must be at least 1"))
    try:
        data = sample_images(images)
        figures = [load_test(server, data, level, requests) for level in levels]
    except MnetError as error:
        fail(error)
    table = Table("clients", "requests", "answered", "failed", "images/s", "p50 ms", "p95 ms", "p99 ms",
                  title=f"{server}: whole explained predictions")
    for row in figures:
        latency = row["latency_ms"]
        table.add_row(str(row["concurrency"]), str(row["requests"]), str(row["answered"]), str(row["failed"]),
                      f"{row['images_per_s']:.1f}", f"{latency['p50']:.1f}", f"{latency['p95']:.1f}",
                      f"{latency['p99']:.1f}")
    stdout.print(table)
    if json_out:
        json_out.write_text(json.dumps({"server": server, "images": len(data), "load": figures}, indent=2))


def serve(
    model: Annotated[Path, typer.Option(help="Exported bundle (model.onnx with its sidecar); --dynamic-batch bundles "
                                        "run each dynamic batch through the network at once.")],
    backend: BackendOpt = BackendName.ort_cpu,
    host: Annotated[str, typer.Option(help="Address to listen on: loopback by default; 0.0.0.0 exposes the server "
                                      "on every interface (an explicit choice).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton's HTTP/REST port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton's gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(min=1, max=65535, help="Prometheus metrics port.")] = 8002,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest dynamic batch.")] = 8,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="How long a request may wait for batch mates "
                                                    "(microseconds). 0: no waiting; requests that queue while the "
                                                    "instances are busy are still batched.")] = 0,
    instances: Annotated[Optional[int], typer.Option(min=1, help="Model instances (processes) answering at once "
                                                     "(default: the machine's cores; the Python around the model "
                                                     "runs in one core per instance).")] = None,
    threads: Annotated[int, typer.Option(min=0, help="ONNX Runtime threads per instance (0: the cores shared "
                                         "out among the instances).")] = 0,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse a request whose image declares more pixels (before "
                                            "decoding it).")] = 50_000_000,
    max_request_mb: Annotated[float, typer.Option(min=0.001, help="Refuse a request whose image data is larger "
                                                  "(MiB), before it is decoded; Triton's own HTTP limit is set to "
                                                  "it where that Triton has one. The default (Triton's own) holds "
                                                  "a JPEG at --max-pixels; a large PNG may need more.")]
                                                  = DEFAULT_MAX_REQUEST_MB,
    serving_env: Annotated[Optional[Path], typer.Option(help="The serving environment (numpy<2 and Triton; default: "
                                                        "$MNET_SERVING_ENV or the project's .venv-serve, built by "
                                                        "make install).")] = None,
    audit: Annotated[Optional[Path], typer.Option(help="Append one hash-chained record per answered image to this "
                                                  "log, from every instance (docs/audit.md).")] = None,
    operator: OperatorOpt = None,
    device_id: DeviceIdOpt = None,
    log_names: LogNamesOpt = False,
    audit_new: AuditNewOpt = False,
    audit_max_mb: AuditMaxMbOpt = None,
    trusted_keys: TrustedKeysOpt = None,
):
    """Serve a bundle on NVIDIA Triton (HTTP, gRPC, Prometheus metrics) as the model `melanomanet`: a request
    sends the encoded image, the answer is the report JSON, the probabilities and the heatmap PNG. Ctrl-C or
    SIGTERM lets in-flight requests finish, then exits 0 (a client holding an idle connection open makes Triton
    wait 30 s for it, then exit 1)."""
    from runtime.serving.repository import ServingOptions
    from runtime.serving.server import Endpoints
    from runtime.serving.server import serve as run_server

    endpoints = Endpoints(host, http_port, grpc_port, metrics_port)

    def ready(where: Endpoints) -> None:
        console.print(f"serving melanomanet: {where.http} (HTTP), {where.grpc} (gRPC), {where.metrics}; readiness "
                      f"{where.http}/v2/health/ready. Ctrl-C stops it.", soft_wrap=True)

    if backend == BackendName.tensorrt:
        fail(ConfigError("--backend tensorrt: serve the ONNX bundle with --backend ort-trt (TensorRT through ONNX "
                         "Runtime), or use `mnet-export triton` for a GPU Triton"))
    if backend.value.startswith("openvino"):
        fail(ConfigError(f"--backend {backend.value}: the serving environment (.venv-serve, Triton's Python stub) "
                         "has no OpenVINO; serve with --backend ort-cpu, or run OpenVINO in-process (mnet run, "
                         "Predictor)"))
    try:
        keys = trusted_key_source(model, trusted_keys)
        cores = os.cpu_count() or 1
        instances = instances or cores
        options = ServingOptions(max_batch, max_queue_delay_us, instances, backend.value,
                                 threads or max(1, cores // instances), max_pixels=max_pixels,
                                 max_request_bytes=int(max_request_mb * 2**20),
                                 audit=str(audit.resolve()) if audit else None, operator=operator,
                                 device_id=device_id, log_names=log_names,
                                 audit_max_bytes=int(audit_max_mb * 1e6) if audit_max_mb else None,
                                 trusted_keys=keys)
        code = run_server(model, endpoints, options, serving_env, announce=ready, audit_new=audit_new)
    except MnetError as error:
        fail(error)
    console.print(f"tritonserver stopped (exit code {code})")
    raise typer.Exit(code)


def trusted_key_source(model: Path, given: Optional[Path]) -> Optional[str]:
    """Where the server's instances read their trusted keys, once the bundle and the ABCD files were checked
    against them here (a refusal before Triton starts)."""
    from runtime.abcde.segmenter import model_records
    from runtime.manifest import sidecar_path
    from runtime.signing import TRUSTED_KEYS_ENV, TrustedKeys

    keys = TrustedKeys.from_option(given)
    if keys is None:
        return None
    keys.check(sidecar_path(model), str(model))
    for record in model_records():
        keys.check(record, f"the ABCD model file {record.name}")
    return str(Path(given or os.environ[TRUSTED_KEYS_ENV]).resolve())


def doctor(
    sbom: Annotated[Optional[Path], typer.Option(help="Also write this environment's software bill of materials "
                                                 "(CycloneDX 1.6 JSON) here.")] = None,
    model: Annotated[Optional[Path], typer.Option(help="An FP32 bundle: say which of its precisions (the bundles "
                                                  "mnet-export quantize wrote beside it, BF16) to run here, from "
                                                  "their measured fidelity and this hardware.")] = None,
):
    """What is installed, which backends will work here, and the fix for each that will not. Exit 0 when the
    runtime can run (ONNX Runtime on the CPU at least)."""
    from runtime.app.doctor import diagnose

    if sbom is not None:
        from runtime.audit.sbom import write_sbom

        try:
            digest = write_sbom(sbom)
        except OSError as error:
            fail(ConfigError(f"--sbom {sbom}: cannot write it ({error.strerror}); give a path you can write to"))
        console.print(f"wrote {sbom} (CycloneDX 1.6, sha256 {digest}: the value audit logs record)", soft_wrap=True)

    checks = diagnose()
    if model is not None:
        from runtime.app.doctor import Check, gpu_name
        from runtime.app.precision import advise
        from runtime.hardware import cpu_flags

        checks.append(Check(f"precision of {model.name}", True, guarded(lambda: advise(model, cpu_flags(),
                                                                                       gpu_name()))))
    table = Table("", "check", "found", "fix", title="mnet doctor")
    table.columns[3].overflow = "fold"
    for check in checks:
        table.add_row("[green]ok[/green]" if check.ok else "[red]no[/red]", check.name, escape(check.detail),
                      "" if check.ok else escape(check.fix))
    stdout.print(table)
    if not checks[0].ok:
        raise typer.Exit(1)


audit_app = typer.Typer(help="The prediction audit log (docs/audit.md): verify its hash chain, replay a record.",
                        no_args_is_help=True, rich_markup_mode=None)


@audit_app.command("verify")
def audit_verify(
    logs: Annotated[list[Path], typer.Argument(metavar="LOGS", help="The log and, after rotation, its earlier "
                                               "files (audit.1.jsonl, ...), in any order.")],
    reports: Annotated[bool, typer.Option(help="Also check that each logged report file beside the log still has "
                                          "the sha256 recorded.")] = True,
):
    """Walk the chain and report every break: an edited, deleted, inserted or reordered record, a truncated
    file, a rotated file missing, a report file changed since. Exit 0 only for an intact chain."""
    from runtime.audit import verify

    breaks = verify(logs, reports)
    records = sum(len([line for line in path.read_bytes().split(b"\n") if line]) for path in logs if path.is_file())
    for found in breaks:
        console.print(f"[red]break[/red] {escape(str(found))}", soft_wrap=True)
    if breaks:
        console.print(f"{len(breaks)} break(s) in {records} records of {len(logs)} file(s): the log cannot be "
                      "trusted from the first break on")
        raise typer.Exit(1)
    console.print(f"[green]intact[/green]: {records} records in {len(logs)} file(s), every hash and link checked"
                  + (", every report file matches" if reports else ""))


@audit_app.command("replay")
def audit_replay(
    record: Annotated[str, typer.Argument(metavar="RECORD", help="LOG:ID or LOG:SEQ, e.g. out/audit.jsonl:3.")],
    images: Annotated[list[Path], typer.Option(help="Folders (or files) to find the input in, by its sha256.")],
    bundles: Annotated[list[Path], typer.Option(help="Folders (or files) to find the bundle in, by its sha256.")],
    backend: Annotated[Optional[BackendName], typer.Option(help="Replay on another backend than the logged one "
                                                           "(then expect agreement within 1e-4, not identity)."
                                                           )] = None,
    json_out: JsonOpt = None,
):
    """Re-run one logged prediction from its image and bundle and say whether the outputs are identical (exit 0)
    or not (exit 1, naming what differs)."""
    from runtime.app.replay import find_record, replay

    try:
        found = replay(find_record(record), images, bundles, backend.value if backend else None)
    except MnetError as error:
        fail(error)
    if json_out:
        json_out.write_text(json.dumps(found, indent=2))
    verdict = "[green]identical[/green]" if found["identical"] else (
        "[yellow]agrees within 1e-4[/yellow]" if found["agrees"] else "[red]differs[/red]")
    console.print(f"{verdict}: {found['image']} on {found['bundle']} ({found['backend']}); largest probability "
                  f"difference {found['max_abs_probability_difference']:.2e}"
                  + (f"; differing: {', '.join(found['differences'])}" if found["differences"] else ""),
                  soft_wrap=True)
    if not found["identical"]:
        raise typer.Exit(1)


app = typer.Typer(help="MelanomaNet Edge: explained predictions (run, abcde, bench, serve, doctor) and, with the "
                       "`train` extra, synthetic data, training, calibration and evaluation.",
                  rich_markup_mode=None, no_args_is_help=True, add_completion=False)
for command in (run, abcde, bench, serve, doctor):
    app.command()(command)
app.add_typer(audit_app, name="audit")

# Packages that add commands to `mnet` name a module here (pyproject's entry points); importing it registers them
# on `app`. The training package does, so the runtime never imports it.
COMMAND_PLUGINS = "mnet.commands"


def main() -> None:
    """The `mnet` entry point: the runtime's commands, and those of every installed plugin (training's)."""
    from importlib.metadata import entry_points

    for plugin in entry_points(group=COMMAND_PLUGINS):
        plugin.load()
    run_app(app, "mnet", "train")
