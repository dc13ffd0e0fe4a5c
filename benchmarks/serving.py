"""Serving against in-process, in one run on one machine (issue 15's acceptance figures):

- throughput: `mnet run --server --concurrency 4` against `mnet run` (pipelined, the machine's cores; ONNX Runtime
  on all cores or on one, whichever is faster) over the same images, both writing the same files (report JSON,
  panel and heatmap PNGs);
- latency: p99 of one client's explained predictions (report JSON and heatmap PNG, over HTTP) against p99 of
  `Predictor.predict` in-process (no encoding at all), with ONNX Runtime on all cores or on one (ABCD then has the
  other core), whichever is faster: a baseline at least as fast as what it stands for. The three take turns,
  request by request, so that they meet the same spells of the machine's noise;
- the server's images/s and p50/p95/p99 at 1, 4 and 16 clients (`mnet bench --server`'s figures).

    .venv/bin/python -m benchmarks.serving --model demo_out/export/model.onnx --images assets/samples
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from benchmarks.pipeline import copies, images_per_s, in_process_images_per_s
from runtime.predictor import Predictor
from runtime.serving.client import ServedModel, load_test

MNET = str(Path(sys.executable).with_name("mnet"))


def start_server(model: Path, port: int, log: Path, options: list[str]) -> subprocess.Popen:
    process = subprocess.Popen([MNET, "serve", "--model", str(model), "--http-port", str(port), "--grpc-port",
                                str(port + 1), "--metrics-port", str(port + 2), *options], stdout=open(log, "w"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"mnet serve exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    raise SystemExit("mnet serve was not ready in 3 minutes")


def interleaved_latencies(model: Path, url: str, data: list[bytes], requests: int) -> dict[str, list[float]]:
    """One explained prediction at a time, in turns: `predict` with ONNX Runtime on all cores, on one core, and a
    request to the server, so that all three meet the same spells of this shared machine's noise. In ms."""
    with ExitStack() as stack:
        predictors = {threads: stack.enter_context(closing(Predictor(model, threads=threads))) for threads in (0, 1)}
        served = ServedModel(url)
        calls = {**{f"predict_threads_{threads}": predictor.predict for threads, predictor in predictors.items()},
                 "served": lambda item: served.request(item, {"name": "latency"}, "latency")}
        for call in calls.values():
            for item in data[:3]:
                call(item)
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        for index in range(requests):
            for name, call in calls.items():
                started = time.perf_counter()
                call(data[index % len(data)])
                latencies[name].append((time.perf_counter() - started) * 1000)
    return latencies


def main(model: Annotated[Path, typer.Option(help="The bundle to serve and to run in-process.")],
         images: Annotated[Path, typer.Option(help="Folder of images (cycled).")] = Path("assets/samples"),
         count: Annotated[int, typer.Option(help="Images per throughput run.")] = 100,
         requests: Annotated[int, typer.Option(help="Requests per load figure.")] = 200,
         latency_requests: Annotated[int, typer.Option(help="Explained predictions per side of the p99 "
                                                      "comparison (a p99 of 200 rests on its two slowest).")] = 600,
         port: Annotated[int, typer.Option(help="Loopback HTTP port (the next two: gRPC, metrics).")] = 18500,
         serve_options: Annotated[str, typer.Option(help="More `mnet serve` options, e.g. '--instances 2'.")] = "",
         out: Annotated[Path, typer.Option(help="JSON with every figure.")] = Path(".benchmarks/serving.json")):
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = copies(images, work / "images", count)
        data = [path.read_bytes() for path in sorted(folder.iterdir())[:8]]
        runs = {threads: in_process_images_per_s(model, threads, folder, work / f"local-{threads}", cores)
                for threads in (0, 1)}
        server = start_server(model, port, work / "server.log", serve_options.split())
        try:
            url = f"http://127.0.0.1:{port}"
            served = ServedModel(url)
            images_per_s(served, folder, work / "warm", 4)
            latency = interleaved_latencies(model, url, data, latency_requests)
            load = [load_test(url, data, level, requests) for level in (1, 4, 16)]
            over_http = images_per_s(served, folder, work / "served", 4)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    p99 = {name: float(np.percentile(values, 99)) for name, values in latency.items()}
    fastest = min((name for name in p99 if name != "served"), key=p99.get)
    in_process = {"mnet_run_images_per_s": max(runs.values()),
                  "mnet_run_images_per_s_by_threads": {str(threads): value for threads, value in runs.items()},
                  "predict_p99_ms": p99[fastest], "predict_p50_ms": float(np.percentile(latency[fastest], 50)),
                  "predict_fastest": fastest, "workers": cores}
    served_c1 = {"p99_ms": p99["served"], "p50_ms": float(np.percentile(latency["served"], 50))}
    figures = {
        "model": str(model), "serve_options": serve_options, "images": count, "requests": requests,
        "latency_requests": latency_requests, "cores": cores,
        "in_process": in_process, "latency_p99_ms_interleaved": p99,
        "served": {"mnet_run_server_concurrency_4_images_per_s": over_http, "one_client_interleaved": served_c1,
                   "load": load},
        "ratios": {
            "throughput_served_c4_over_in_process_run": over_http / in_process["mnet_run_images_per_s"],
            "p99_served_c1_over_in_process_predict": p99["served"] / in_process["predict_p99_ms"]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps({"in_process": in_process, "served_run_c4": over_http, "served_c1": served_c1,
                      "ratios": figures["ratios"],
                      "load": [{k: row[k] for k in ("concurrency", "images_per_s", "latency_ms", "failed")}
                               for row in load]}, indent=1))


if __name__ == "__main__":
    typer.run(main)
