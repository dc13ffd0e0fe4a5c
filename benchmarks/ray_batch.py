"""`mnet run --engine ray` against the local pipelined `mnet run`, in one run on one machine (issue 45's figures):
images/s over the same images, all writing the same files (report JSON, panel and heatmap PNGs, summary.csv,
audit log), with 1 and 2 actors on a local Ray. The local baseline is the fastest `mnet run` in one process: ONNX
Runtime on all cores or on one, pipelined over the machine's cores or twice as many workers. A second baseline
does what Ray's actors do without Ray: one `mnet run` process per core, each on its share of the images (as
a list), started together, timed until the last ends. For Ray, two rates: over the whole run (Ray already up;
the actors' start, each opening and verifying the bundle, included) and steady (the second half of the images,
from the time the middle one was written to the last: results arrive in blocks, so the first image's time
would leave a block's work out of the window). The mean stage timings of the Ray run's reports say where an
actor's time goes.

    .venv/bin/python -m benchmarks.ray_batch --model models/ham10000_lite0.onnx --images assets/samples
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.pipeline import copies, in_process_images_per_s
from runtime.app.batch import run_batch
from runtime.app.ray_engine import PredictorSpec, RayEngine, RaySettings
from runtime.audit import AuditLog, Identity
from runtime.hardware import cpu_summary
from runtime.predictor import Predictor

MNET = str(Path(sys.executable).with_name("mnet"))


def split_processes_images_per_s(model: Path, folder: Path, work: Path, processes: int) -> float:
    """`processes` `mnet run` commands at once, each on every `processes`-th image (a CSV list), one ONNX
    Runtime thread and one worker each."""
    images = sorted(folder.iterdir())
    commands = []
    for part in range(processes):
        listing = work / f"part-{part}.csv"
        listing.write_text("path\n" + "".join(f"{path}\n" for path in images[part::processes]))
        commands.append([MNET, "run", str(listing), "--model", str(model), "-o", str(work / f"split-{part}"),
                         "--threads", "1", "--workers", "1"])
    started = time.perf_counter()
    running = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for command in commands]
    assert all(process.wait() == 0 for process in running)
    return len(images) / (time.perf_counter() - started)


def ray_run(model: Path, folder: Path, out: Path, actors: int) -> dict:
    written: list[float] = []
    predictor = Predictor(model, threads=1)
    engine = RayEngine(PredictorSpec(model.absolute(), {"threads": 1}), RaySettings(actors=actors), None)
    started = time.perf_counter()
    summary = run_batch(predictor, [folder], out, progress=lambda path: written.append(time.perf_counter()),
                        engine=engine, open_audit=lambda: AuditLog(out / "audit.jsonl", Identity()))
    elapsed = time.perf_counter() - started
    assert not summary.failed, summary.failed[0].row
    count = len(summary.outcomes)
    timings = [json.loads(path.read_text())["timings_ms"] for path in out.glob("*.json") if path.name != "run.json"]
    stages = {stage: round(sum(t[stage] for t in timings) / len(timings), 2) for stage in timings[0]}
    return {"actors": actors, "images_per_s": count / elapsed,
            "steady_images_per_s": (count - count // 2) / (written[-1] - written[count // 2 - 1]),
            "first_image_s": written[0] - started, "report_timings_ms_mean": stages}


def main(model: Annotated[Path, typer.Option(help="The bundle to run.")],
         images: Annotated[Path, typer.Option(help="Folder of images (cycled).")] = Path("assets/samples"),
         count: Annotated[int, typer.Option(help="Images per run.")] = 100,
         out: Annotated[Path, typer.Option(help="JSON with every figure.")] = Path(".benchmarks/ray.json")):
    import ray

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = copies(images, work / "images", count)
        local = {f"threads {threads}, workers {workers}":
                 in_process_images_per_s(model, threads, folder, work / f"local-{threads}-{workers}", workers)
                 for threads in (0, 1) for workers in (cores, 2 * cores)}
        split = split_processes_images_per_s(model, folder, work, cores)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            runs = [ray_run(model, folder, work / f"ray-{actors}", actors) for actors in (1, 2)]
        finally:
            ray.shutdown()
    baseline = max(local.values())
    figures = {"model": str(model), "images": count, "cpu": cpu_summary(), "cores": cores,
               "local": {"mnet_run_images_per_s": baseline, "by_settings": local,
                         "split_processes_images_per_s": split, "processes": cores},
               "ray": runs,
               "ratios": {f"ray_{run['actors']}_actors_over_local": run["images_per_s"] / baseline for run in runs}
               | {f"ray_{run['actors']}_actors_steady_over_local": run["steady_images_per_s"] / baseline
                  for run in runs}
               | {f"ray_{run['actors']}_actors_over_split_processes": run["images_per_s"] / split for run in runs}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    typer.run(main)
