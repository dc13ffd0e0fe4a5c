"""Which precision to run on the machine at hand: the FP32 bundle and its reduced-precision siblings (FP16, INT8
bundles beside it made from it by `mnet-export quantize`, BF16 as OpenVINO's run-time hint) on the backends this
machine has, each timed as a whole explained prediction and paired with the fidelity measured when it was made.
The fastest one whose fidelity met the targets is recommended; one never measured is never recommended."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from runtime.backends import open_backend
from runtime.errors import ConfigError
from runtime.hardware import BF16_FLAGS, INT8_DOT_FLAGS, RELEVANT_FLAGS, cpu_flags, cpu_name, cpu_summary
from runtime.manifest import read_sidecar, sidecar_path


@dataclass
class Candidate:
    bundle: Path
    backend: str
    precision: str
    fidelity: dict | None  # as measured by mnet-export quantize; None: FP32 itself, or never measured

    @property
    def label(self) -> str:
        return f"{self.precision} on {self.backend}"

    @property
    def meets_targets(self) -> bool:
        return self.precision == "fp32" or bool(self.fidelity and self.fidelity.get("passed"))


def bf16_report_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".bf16.fidelity.json")


def candidates(bundle: Path) -> list[Candidate]:
    """The FP32 bundle on ONNX Runtime (and OpenVINO, FP32 and BF16, where installed), and every bundle in its
    folder that `mnet-export quantize` made from it."""
    bundle = Path(bundle)
    fp32 = open_backend(bundle, "ort-cpu")
    if fp32.manifest.precision != "fp32":
        raise ConfigError(f"{bundle}: give the FP32 bundle; its quantized siblings beside it are found from it")
    openvino = find_spec("openvino") is not None
    found = [Candidate(bundle, "ort-cpu", "fp32", None)]
    if openvino:
        found.append(Candidate(bundle, "openvino", "fp32", None))
        report = bf16_report_path(bundle)
        measured = json.loads(report.read_text())["run_time_precision"]["fidelity"] if report.exists() else None
        found.append(Candidate(bundle, "openvino-bf16", "bf16", measured))
    for sibling in sorted(bundle.parent.glob("*.onnx")):
        if sibling == bundle or not sidecar_path(sibling).exists():
            continue
        manifest = read_sidecar(sibling)[0]
        if manifest.quantization.get("fp32_bundle_sha256") != fp32.sha256:
            continue
        # Timed where its fidelity was measured: OpenVINO for a bundle made for it, ONNX Runtime otherwise.
        backend = "openvino" if manifest.quantization.get("target") == "openvino" else "ort-cpu"
        if backend == "ort-cpu" or openvino:
            found.append(Candidate(sibling, backend, manifest.precision, manifest.quantization.get("fidelity")))
    fp32.close()
    return found


def time_candidate(candidate: Candidate, images: list[Path], repeats: int, mc_samples: int | None) -> dict:
    """p50 and p95 of whole explained predictions from the files (T MC samples, GradCAM++, ABCD, the report)."""
    from runtime.predictor import Predictor

    predictor = Predictor(candidate.bundle, backend=candidate.backend, mc_samples=mc_samples)
    try:
        for path in images[:2]:
            predictor.predict(path)
        samples = []
        for index in range(repeats):
            started = time.perf_counter()
            json.dumps(predictor.predict(images[index % len(images)]).to_dict())
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        predictor.close()
    return {"p50_ms": float(np.percentile(samples, 50)), "p95_ms": float(np.percentile(samples, 95)),
            "runs": repeats}


def compare_precisions(bundle: Path, images: list[Path], repeats: int = 20, mc_samples: int | None = None) -> dict:
    """Every candidate's speed and fidelity, its speed-up over FP32 on ONNX Runtime, and the recommendation."""
    rows = []
    for candidate in candidates(bundle):
        timing = time_candidate(candidate, images, repeats, mc_samples)
        rows.append({"bundle": candidate.bundle.name, "backend": candidate.backend, "precision": candidate.precision,
                     **timing, "fidelity_measured": candidate.fidelity is not None or candidate.precision == "fp32",
                     "meets_targets": candidate.meets_targets,
                     "failed": (candidate.fidelity or {}).get("failed", []),
                     "top1_agreement": (candidate.fidelity or {}).get("top1_agreement")})
    baseline = rows[0]["p50_ms"]
    for row in rows:
        row["speedup_over_ort_fp32"] = baseline / row["p50_ms"]
    eligible = [row for row in rows if row["meets_targets"]]
    best = min(eligible, key=lambda row: row["p50_ms"])
    return {"bundle": str(bundle), "rows": rows, "recommended": best, "cpu": cpu_name(),
            "cpu_flags": sorted(cpu_flags() & set(RELEVANT_FLAGS)), "cpu_summary": cpu_summary()}


def hardware_advice(flags: set[str], gpu: str | None, openvino: bool) -> str:
    """What `mnet doctor` says before anything is timed: the precision this hardware is built for."""
    if gpu:
        return (f"{gpu}: FP16 TensorRT engines (mnet-export trt --fp16), or INT8 from a QDQ bundle made with "
                "--target tensorrt where its fidelity holds")
    if flags & BF16_FLAGS:
        hint = "BF16 (--backend openvino-bf16)" if openvino else "BF16 with the `openvino` extra installed"
        return f"this CPU computes BF16 natively: {hint}; INT8 where its fidelity holds"
    if flags & INT8_DOT_FLAGS:
        return "this CPU has INT8 dot products (VNNI/dotprod): INT8 bundles where their fidelity holds"
    return "FP32: this CPU has no BF16 or INT8 dot-product instructions"


def advise(bundle: Path, flags: set[str], gpu: str | None) -> str:
    """`mnet doctor --model`: the precision to run here, from the hardware and the fidelity already measured for
    this bundle (nothing is timed: `mnet bench --precision` measures)."""
    found = candidates(bundle)
    passed = [c for c in found if c.precision != "fp32" and c.meets_targets]
    missed = [c for c in found if c.fidelity is not None and not c.meets_targets]
    said = "; ".join([f"{c.label} meets the fidelity targets" for c in passed] +
                     [f"{c.label} misses them ({'; '.join(c.fidelity['failed'])})" for c in missed]) or \
        "no reduced precision measured yet (mnet-export quantize)"
    if gpu:
        choice = "an FP16 TensorRT engine (mnet-export trt --fp16)"
    elif flags & BF16_FLAGS and any(c.backend == "openvino-bf16" for c in passed):
        choice = "BF16 on OpenVINO (--backend openvino-bf16)"
    elif any(c.precision == "int8" for c in passed):
        choice = next(c.label for c in passed if c.precision == "int8")
    else:
        choice = "FP32 (--backend ort-cpu or openvino)"
    return f"{said}. Here: {choice}; time them with mnet bench --model {bundle} --precision"
