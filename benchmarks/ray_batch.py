"""`mnet run --engine ray` against the local pipelined `mnet run`, in one run on one machine (issue 45's figures):
images/s over the same images, all writing the same files (report JSON, panel and heatmap PNGs, summary.csv,
audit log), with 1 and 2 actors on a local Ray. The local baseline is the faster of ONNX Runtime on all cores
and on one core, pipelined over the machine's cores. For Ray, two rates: over the whole run (Ray already up;
the actors' start, each opening and verifying the bundle, included) and steady (from the first image written
to the last). The mean stage timings of the Ray run's reports say where an actor's time goes.

    .venv/bin/python -m benchmarks.ray_batch --model models/ham10000_lite0.onnx --images assets/samples
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.pipeline import copies, images_per_s
from runtime.app.batch import run_batch
from runtime.app.ray_engine import PredictorSpec, RayEngine, RaySettings
from runtime.audit import AuditLog, Identity
from runtime.hardware import cpu_summary
from runtime.predictor import Predictor


def local_images_per_s(model: Path, threads: int, folder: Path, out: Path, workers: int) -> float:
    with closing(Predictor(model, threads=threads)) as predictor:
        return images_per_s(predictor, folder, out, workers)


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
            "steady_images_per_s": (count - 1) / (written[-1] - written[0]),
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
        local = {threads: local_images_per_s(model, threads, folder, work / f"local-{threads}", cores)
                 for threads in (0, 1)}
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            runs = [ray_run(model, folder, work / f"ray-{actors}", actors) for actors in (1, 2)]
        finally:
            ray.shutdown()
    baseline = max(local.values())
    figures = {"model": str(model), "images": count, "cpu": cpu_summary(), "cores": cores,
               "local": {"mnet_run_images_per_s": baseline, "by_threads": {str(k): v for k, v in local.items()},
                         "workers": cores},
               "ray": runs,
               "ratios": {f"ray_{run['actors']}_actors_over_local": run["images_per_s"] / baseline for run in runs}
               | {f"ray_{run['actors']}_actors_steady_over_local": run["steady_images_per_s"] / baseline
                  for run in runs}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    typer.run(main)
