"""Peak memory of INT8 calibration (docs/precision.md, "Memory"): quantize BUNDLE with N calibration images from a
folder and report the process's peak resident set size, the calibration streamed (what mnet-export quantize
does) or, with --held, every image's activations held at once (ONNX Runtime's default, for comparison).

    python -m studies.quantize_memory build/v2m/model.onnx ../shared/data/real/ham10000/images --images 300

The bundle's weights do not matter for memory: docs/precision.md uses a randomly initialised EfficientNetV2-M
exported at 384 px (`mnet-export onnx` of `build_model("tf_efficientnetv2_m")`)."""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import export.stages.quantize as quantize
from export.precision import quantize_bundle
from export.spec import FidelityTargets
from export.stages.quantize import QuantizeSpec
from runtime.hardware import cpu_summary

MEASURE_ONLY = FidelityTargets(top1_agreement=0.0, referral_agreement=0.0, gradcampp_pearson_median=0.0,
                               melanoma_sensitivity_within_interval=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("calib", type=Path, help="a folder of real images")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--method", default="minmax", choices=quantize.METHODS)
    parser.add_argument("--eval-limit", type=int, default=20)
    parser.add_argument("--held", action="store_true", help="hold every image's activations (no streaming)")
    parser.add_argument("--out", type=Path, default=Path("build/quantize-memory"))
    args = parser.parse_args()
    if args.held:
        quantize.CALIBRATION_STRIDE = None
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    spec = QuantizeSpec("int8", methods=(args.method,), calib_images=args.images, sensitivity=False)
    made = quantize_bundle(args.bundle, spec, args.out / "int8.onnx", args.calib, [], args.eval_limit,
                           accept=True, targets=MEASURE_ONLY, log=print)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bundle": str(args.bundle), "calibration_images": made.record["calibration"]["images"],
                      "method": args.method, "streamed": not args.held, "peak_rss_mb": round(peak_mb),
                      "minutes": round((time.monotonic() - started) / 60, 1), "cpu": cpu_summary()}))


if __name__ == "__main__":
    main()
