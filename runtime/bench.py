"""`mnet bench`: latency percentiles per stage, throughput at batch 1 and 8, peak memory (torch-free)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from runtime.contract import CAM_ACTIVATIONS, CAM_CLASS, CAM_GRADIENTS, IMAGE, MC_MASK
from runtime.explain.gradcampp import gradcampp_maps
from runtime.imageio import collect_images, load_image
from runtime.predictor import Predictor
from runtime.preprocess import preprocess


def percentiles(samples_ms: list[float]) -> dict:
    values = np.asarray(samples_ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "runs": len(values)}


def bench(model: Path, backend: str = "ort-cpu", mc_samples: int | None = None, images: Path | None = None,
          batch: int = 8, repeats: int = 20, threads: int = 0) -> dict:
    predictor = Predictor(model, backend=backend, mc_samples=mc_samples, threads=threads)
    files = collect_images([images])[0] if images else []
    pictures = [load_image(found.path) for found in files[:8]] or [_synthetic_image()]
    stages: dict[str, list[float]] = {}
    for index in range(repeats + 2):
        result = predictor.predict(pictures[index % len(pictures)])
        if index >= 2:
            for stage, value in result.timings_ms.items():
                stages.setdefault(stage, []).append(value)
    spec = predictor.manifest.preprocessing
    tensors = np.stack([preprocess(p, spec) for p in pictures])
    throughput = {"batch_1": _throughput(predictor, tensors[:1], repeats)}
    if predictor.backend.inputs[0].shape[0] is None:
        stacked = np.concatenate([tensors] * (batch // len(tensors) + 1))[:batch]
        throughput[f"batch_{batch}"] = _throughput(predictor, stacked, max(3, repeats // 4))
    else:
        throughput[f"batch_{batch}"] = {"images_per_s": throughput["batch_1"]["images_per_s"],
                                        "note": "fixed-batch bundle: images run one at a time "
                                                "(export with --dynamic-batch for batched inference)"}
    return {"model": str(model), "backend": predictor.backend.name, "mc_samples": predictor.mc_samples,
            "images": len(pictures), "stages_ms": {k: percentiles(v) for k, v in stages.items()},
            "throughput": throughput, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
            "includes": "inference with T MC samples + GradCAM++ maps for every class"}


def _synthetic_image() -> np.ndarray:
    import cv2

    from runtime.abcde.palette import DERMOSCOPIC_COLOURS

    image = np.full((450, 600, 3), (226, 178, 156), np.uint8)
    cv2.ellipse(image, ((300, 225), (260, 180), 30), DERMOSCOPIC_COLOURS["dark_brown"], -1)
    return image
