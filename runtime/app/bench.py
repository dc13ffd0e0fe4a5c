"""`mnet bench`: latency percentiles per stage of a whole explained prediction from a file (report included),
`mnet run` throughput one at a time and pipelined, inference-only throughput, peak memory (torch-free)."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.app.batch import run_batch, write_outputs
from runtime.contract import CAM_ACTIVATIONS, CAM_CLASS, CAM_GRADIENTS, IMAGE, MC_MASK
from runtime.errors import ConfigError
from runtime.explain.gradcampp import gradcampp_maps
from runtime.imageio import collect_images, load_image
from runtime.predictor import Predictor
from runtime.preprocess import preprocess


def percentiles(samples_ms: list[float]) -> dict:
    values = np.asarray(samples_ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "runs": len(values)}


EXPLAINED = ("decode from the file, preprocess, inference with T MC samples, uncertainty, GradCAM++, ABCD, and the "
             "JSON report, panel PNG and heatmap PNG written; total is the wall time, in which ABCD runs beside "
             "inference, so it is less than the sum of the stages")


def bench(model: Path, backend: str = "ort-cpu", mc_samples: int | None = None, images: Path | None = None,
          batch: int = 8, repeats: int = 20, threads: int = 0, workers: int | None = None) -> dict:
    """Per-stage latency of whole explained predictions from image files (the report stage included), the
    throughput of `mnet run` one image at a time and pipelined over `workers` threads, and inference-only
    throughput at batch 1 and `batch`."""
    predictor = Predictor(model, backend=backend, mc_samples=mc_samples, threads=threads)
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        files = [found.path for found in collect_images([images])[0][:8]] if images else [_synthetic_file(work)]
        stages: dict[str, list[float]] = {}
        for index in range(repeats + 2):
            result = predictor.predict(files[index % len(files)])
            started = time.perf_counter()
            write_outputs(result, work, "bench")
            report_ms = (time.perf_counter() - started) * 1000
            timings = {**{k: v for k, v in result.timings_ms.items() if k != "total"}, "report": report_ms,
                       "total": result.timings_ms["total"] + report_ms}
            if index >= 2:
                for stage, value in timings.items():
                    stages.setdefault(stage, []).append(value)
        copies = work / "batch"
        copies.mkdir()
        for index in range(max(repeats, 2 * workers)):
            shutil.copy(files[index % len(files)], copies / f"{index:04d}{files[index % len(files)].suffix}")
        throughput = {"run_sequential": _run_throughput(predictor, copies, work / "one", 1),
                      f"run_pipelined_{workers}_workers": _run_throughput(predictor, copies, work / "many", workers)}
        spec = predictor.manifest.preprocessing
        tensors = np.stack([preprocess(load_image(path), spec) for path in files])
    throughput["inference_batch_1"] = _throughput(predictor, tensors[:1], repeats)
    if predictor.backend.inputs[0].shape[0] is None:
        stacked = np.concatenate([tensors] * (batch // len(tensors) + 1))[:batch]
        throughput[f"inference_batch_{batch}"] = _throughput(predictor, stacked, max(3, repeats // 4))
    else:
        throughput[f"inference_batch_{batch}"] = {
            **throughput["inference_batch_1"],
            "note": "fixed-batch bundle: images run one at a time (export with --dynamic-batch for batched inference)"}
    return {"model": str(model), "backend": predictor.backend.name, "mc_samples": predictor.mc_samples,
            "images": len(files), "stages_ms": {k: percentiles(v) for k, v in stages.items()},
            "stages_include": EXPLAINED, "throughput": throughput,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_throughput(predictor: Predictor, folder: Path, out: Path, workers: int) -> dict:
    started = time.perf_counter()
    summary = run_batch(predictor, [folder], out, workers=workers)
    elapsed = time.perf_counter() - started
    done = sum(outcome.status == "ok" for outcome in summary.outcomes)
    return {"images_per_s": done / elapsed, "images": done, "workers": workers,
            "includes": f"mnet run: {EXPLAINED}, and the summary row"}


def _throughput(predictor: Predictor, tensors: np.ndarray, repeats: int) -> dict:
    feed = {IMAGE: tensors, MC_MASK: predictor.mc_mask}
    if predictor.backend.input(CAM_CLASS) is not None:
        feed[CAM_CLASS] = np.zeros(len(tensors), np.int64)
    predictor.backend.infer(feed)
    start = time.perf_counter()
    for _ in range(repeats):
        outputs = predictor.backend.infer(feed)
        gradients = outputs[CAM_GRADIENTS]
        for index in range(len(tensors)):
            gradcampp_maps(outputs[CAM_ACTIVATIONS][index], gradients[min(index, len(gradients) - 1)])
    elapsed = time.perf_counter() - start
    return {"images_per_s": repeats * len(tensors) / elapsed, "batch": len(tensors),
            "includes": "inference only (T MC samples) and GradCAM++ maps for every class: no decode, ABCD or "
                        "report"}


def sample_files(images: Path | None, folder: Path, limit: int = 8) -> list[Path]:
    """Up to `limit` image files of the folder `images`, or the drawn lesion, written into `folder`."""
    if images:
        files = [found.path for found in collect_images([images])[0][:limit]]
        if not files:
            raise ConfigError(f"--images {images}: no images there")
        return files
    return [_synthetic_file(folder)]


def sample_images(images: Path | None, limit: int = 8) -> list[bytes]:
    """The encoded bytes of up to `limit` images of the folder, or of the drawn lesion."""
    with tempfile.TemporaryDirectory() as folder:
        return [path.read_bytes() for path in sample_files(images, Path(folder), limit)]


def _synthetic_file(folder: Path) -> Path:
    """A drawn 600x450 lesion saved as JPEG, for timing from a file when no --images are given."""
    import cv2

    from runtime.abcde.palette import DERMOSCOPIC_COLOURS

    image = np.full((450, 600, 3), (226, 178, 156), np.uint8)
    cv2.ellipse(image, ((300, 225), (260, 180), 30), DERMOSCOPIC_COLOURS["dark_brown"], -1)
    path = folder / "drawn_lesion.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
