"""Issue 17, item 4, with the network on a GPU: `mnet run`'s throughput over the same images one at a time
(`--workers 1`) and pipelined (more workers), every run writing the same files (report JSON, panel and heatmap
PNGs), and whether the pipelined reports equal the sequential ones. The network is the exported one-pass graph
in PyTorch (`TorchGraphBackend`, random weights): neither onnxruntime-gpu nor TensorRT installs on the lent GPU
machine. For an ONNX bundle, `mnet bench --workers N` gives the same figures.

    python -m benchmarks.pipeline --graph tf_efficientnetv2_s@384 --device cuda --workers 2,4,8,16
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from runtime.app.batch import run_batch
from runtime.imageio import collect_images
from runtime.outputs import RUN_FILE
from runtime.predictor import Predictor


def copies(images: Path, folder: Path, count: int) -> Path:
    """`count` images in a new `folder`, cycling through those of `images`."""
    files = [found.path for found in collect_images([images])[0]]
    folder.mkdir()
    for index in range(count):
        shutil.copy(files[index % len(files)], folder / f"{index:04d}{files[index % len(files)].suffix}")
    return folder


def images_per_s(predictor, folder: Path, out: Path, workers: int) -> float:
    started = time.perf_counter()
    summary = run_batch(predictor, [folder], out, workers=workers)
    elapsed = time.perf_counter() - started
    assert not summary.failed, summary.failed[0].row
    return len(summary.outcomes) / elapsed


def in_process_images_per_s(model: Path, threads: int, folder: Path, out: Path, workers: int) -> float:
    """`mnet run` in this process: ONNX Runtime on `threads` threads (0: all), `workers` pipelining."""
    with closing(Predictor(model, threads=threads)) as predictor:
        return images_per_s(predictor, folder, out, workers)


def graph_predictor(graph: str, device: str, mc_samples: int, scratch: Path) -> tuple[Predictor, dict]:
    """A predictor running the one-pass graph of `ARCH@SIZE` (random weights) in PyTorch on `device`; and what
    it is."""
    import torch

    from benchmarks.torch_backend import TorchGraphBackend, random_source

    architecture, size = graph.split("@")
    source = random_source(architecture, int(size), scratch)
    backend = TorchGraphBackend(source, int(size), device)
    described = {"model": graph, "backend": backend.name, "torch": torch.__version__}
    if device.startswith("cuda"):
        described["gpu"] = torch.cuda.get_device_name()
    return Predictor(source.path, backend=backend, mc_samples=mc_samples), described


def agreement(first: Path, second: Path) -> dict:
    """How the reports of two runs over the same images compare, timings aside."""
    equal, largest = 0, 0.0
    reports = sorted(path for path in first.glob("*.json") if path.name != RUN_FILE)
    for report in reports:
        one, other = (json.loads(path.read_text()) for path in (report, second / report.name))
        one.pop("timings_ms"), other.pop("timings_ms")
        equal += one == other
        largest = max(largest, *(abs(one["prediction"]["probabilities"][name] - value)
                                 for name, value in other["prediction"]["probabilities"].items()))
    return {"reports": len(reports), "identical": equal, "max_probability_difference": largest}


def pipeline_figures(graph: str, device: str, images: Path, count: int, levels: list[int],
                     mc_samples: int) -> dict:
    """Images/s of `mnet run` at each worker count of `levels` (1 always runs: the sequential baseline), and how the
    pipelined reports compare with the sequential ones."""
    levels = sorted({1, *levels})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = copies(images, work / "images", count)
        predictor, described = graph_predictor(graph, device, mc_samples, work)
        with closing(predictor):
            images_per_s(predictor, folder, work / "warm-up", 1)
            rates = {level: images_per_s(predictor, folder, work / f"workers-{level}", level) for level in levels}
        agreements = {level: agreement(work / "workers-1", work / f"workers-{level}") for level in levels[1:]}
    return {**described, "images": count, "mc_samples": mc_samples, "cores": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "images_per_s": {str(level): rate for level, rate in rates.items()},
            "over_sequential": {str(level): rate / rates[1] for level, rate in rates.items()},
            "pipelined_against_sequential": {str(level): value for level, value in agreements.items()}}


def main(graph: Annotated[str, typer.Option(help="ARCH@SIZE: the one-pass graph in PyTorch, random weights.")]
         = "tf_efficientnetv2_s@384",
         device: Annotated[str, typer.Option(help="PyTorch device of --graph.")] = "cuda",
         images: Annotated[Path, typer.Option(help="Folder of images (cycled).")] = Path("assets/samples"),
         count: Annotated[int, typer.Option(min=1, help="Images per run.")] = 100,
         workers: Annotated[str, typer.Option(help="Worker counts, comma-separated (1, the sequential baseline, "
                                              "always runs).")] = "2",
         mc_samples: Annotated[int, typer.Option(min=1, help="MC dropout samples per image.")] = 10,
         out: Annotated[Path, typer.Option(help="JSON with every figure.")] = Path(".benchmarks/pipeline.json")):
    figures = pipeline_figures(graph, device, images, count, [int(value) for value in workers.split(",")],
                               mc_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    for level, rate in figures["images_per_s"].items():
        print(f"--workers {level:<3} {rate:7.1f} images/s  ({figures['over_sequential'][level]:.2f}x one at a time)")
    print(json.dumps(figures["pipelined_against_sequential"], indent=1))


if __name__ == "__main__":
    typer.run(main)
