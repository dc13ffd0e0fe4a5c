"""`mnet-export quantize`: an FP32 bundle -> a reduced-precision bundle (FP16, INT8) or a BF16 run-time verdict,
with its fidelity on held-out real images measured against the FP32 bundle, recorded in the new bundle's
manifest and beside it, and a bundle that misses the targets refused unless accepted explicitly."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.fidelity import calibration_images, explain_pairs, fidelity, held_out_images
from export.spec import FidelityTargets
from export.stages.quantize import QuantizeSpec, to_fp16, to_int8, write_bundle
from runtime.backends import open_backend
from runtime.errors import ConfigError, MnetError

TUNING_IMAGES = 200


class FidelityMissed(MnetError):
    """A reduced-precision bundle that misses the fidelity targets (kept only with --accept-fidelity)."""


@dataclass
class Outcome:
    bundle: Path | None  # None for bf16 (a run-time choice: no new graph) and for a refused bundle
    report: Path
    figures: dict
    record: dict


def fidelity_report_path(out: Path) -> Path:
    return out.with_name(out.name + ".fidelity.json") if out.suffix == ".onnx" else out


def quantize_bundle(bundle: Path, spec: QuantizeSpec | None, out: Path, calib: Path | None, evals: list[Path],
                    eval_limit: int | None = None, accept: bool = False, targets: FidelityTargets = FidelityTargets(),
                    log: Callable[[str], None] = print,
                    progress: Callable[[int, int], None] | None = None) -> Outcome:
    """`spec` None means BF16: the FP32 bundle measured under OpenVINO's BF16 hint, no new file but the report."""
    fp32 = open_backend(bundle, "ort-cpu")
    manifest, sha256 = fp32.manifest, fp32.sha256
    fp32.close()
    if manifest.precision != "fp32":
        raise ConfigError(f"{bundle}: this bundle is already {manifest.precision}; quantize the FP32 bundle it was "
                          "made from")
    sources = evals or ([calib] if calib else [])
    if not sources:
        raise ConfigError("give held-out real images to measure fidelity on: --eval DIR (a data folder the bundle "
                          "was trained on gives its validation split)")
    images = held_out_images(sources, manifest, eval_limit, calibration_source=not evals and spec is not None)
    log(f"fidelity images: {len(images)} ({', '.join(sorted({i.set for i in images}))})")
    report = fidelity_report_path(out)
    if spec is None:
        return _bf16(bundle, images, report, targets, progress)
    if calib is None:
        raise ConfigError(f"--precision {spec.precision} needs --calib DIR: real images to calibrate on (a data "
                          "folder the bundle was trained on gives its training split)")
    if spec.precision == "int8":
        calibration = calibration_images(calib, manifest, spec.calib_images, TUNING_IMAGES, held_out=images,
                                         set_aside=not evals)
        log(f"calibrating on {len(calibration.calibrate)} images, tuning on {len(calibration.tune)}")
        model, record = to_int8(bundle, calibration, spec, targets, log)
        record["calibration"] = {"images": len(calibration.calibrate), "sha256": calibration.sha256,
                                 "source": Path(calib).name}
    else:
        model, record = to_fp16(bundle)
    record |= {"fp32_bundle_sha256": sha256, "fp32_bundle": Path(bundle).name}
    backend = "openvino" if spec.target == "openvino" else "ort-cpu"  # where the target would run it, here
    with tempfile.TemporaryDirectory(prefix="mnet-quantize-") as work:
        trial = write_bundle(model, manifest.with_updates(precision=spec.precision, quantization=record),
                             Path(work) / "candidate.onnx")
        log(f"measuring fidelity on {backend} against the FP32 bundle")
        pairs, context = explain_pairs(bundle, trial, images, backend, progress)
    figures = fidelity(pairs, context, targets)
    record["fidelity"] = figures
    _write_json(report, {"bundle": Path(out).name, "quantization": record})
    if not figures["passed"] and not accept:
        raise FidelityMissed(f"{out}: not written: the {spec.precision} bundle misses the fidelity targets "
                             f"({'; '.join(figures['failed'])}); every figure is in {report}. Keep more layers in FP32 "
                             "(--keep-fp32), calibrate on more images, or accept it knowingly with --accept-fidelity")
    written = write_bundle(model, manifest.with_updates(precision=spec.precision, quantization=record), out)
    return Outcome(written, report, figures, record)


def _bf16(bundle: Path, images, report: Path, targets: FidelityTargets, progress) -> Outcome:
    pairs, context = explain_pairs(bundle, bundle, images, "openvino-bf16", progress)
    figures = fidelity(pairs, context, targets)
    record = {"precision": "bf16", "backend": "openvino-bf16", "fidelity": figures}
    _write_json(report, {"bundle": Path(bundle).name, "run_time_precision": record})
    return Outcome(None, report, figures, record)


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2))
    temporary.replace(path)
