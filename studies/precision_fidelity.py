"""The fidelity rows of docs/precision.md: the shipped real model (models/ham10000_lite0.onnx) made FP16 and INT8
(every calibration method, with and without the sensitivity pass, for ONNX Runtime, OpenVINO and TensorRT,
and with 100 / 300 / 1,000 calibration images) and run in BF16 under OpenVINO, each measured against the FP32
bundle on held-out real images: HAM10000's validation split (the split the bundle records) and all of ISIC 2017
Part 1. Every variant goes through `mnet-export quantize`'s own code, accepted whatever its fidelity, so the
table shows what misses and why.

    python studies/precision_fidelity.py --data ../shared/data/real --out docs/precision
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from export.precision import quantize_bundle
from export.stages.quantize import QuantizeSpec

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "ham10000_lite0.onnx"

VARIANTS = {
    "fp16": QuantizeSpec("fp16"),
    "int8 (ort, all layers INT8)": QuantizeSpec("int8", sensitivity=False),
    "int8 (ort, sensitivity pass)": QuantizeSpec("int8"),
    "int8 (openvino, all layers INT8)": QuantizeSpec("int8", target="openvino", sensitivity=False),
    "int8 (openvino, sensitivity pass)": QuantizeSpec("int8", target="openvino"),
    "int8 (tensorrt, all layers INT8)": QuantizeSpec("int8", target="tensorrt", sensitivity=False),
    "int8 (ort, all layers, 100 calibration images)": QuantizeSpec("int8", methods=("minmax",), calib_images=100,
                                                                   sensitivity=False),
    "int8 (ort, all layers, 1000 calibration images)": QuantizeSpec("int8", methods=("minmax",),
                                                                    calib_images=1000, sensitivity=False),
    "bf16 (openvino hint on the FP32 bundle)": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder with ham10000/ and isic2017/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="images per held-out set (default: all)")
    parser.add_argument("--only", default=None, help="run only the variants whose name contains this")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    evals = [args.data / "ham10000", args.data / "isic2017"]
    results_path = args.out / "fidelity.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name, spec in VARIANTS.items():
        if args.only and args.only not in name:
            continue
        started = time.time()
        print(f"== {name}", flush=True)
        target = args.out / "bundles" / (name.split(" ")[0] + ".onnx")
        outcome = quantize_bundle(BUNDLE, spec, target if spec else args.out / "bundles" / "bf16.fidelity.json",
                                  args.data / "ham10000", evals, args.limit, accept=True,
                                  log=lambda line: print(line, flush=True))
        results[name] = {"figures": outcome.figures, "record": {k: v for k, v in outcome.record.items()
                                                                 if k != "fidelity"},
                         "seconds": round(time.time() - started)}
        results_path.write_text(json.dumps(results, indent=2))
        print(f"   top-1 {outcome.figures['top1_agreement']:.4f} failed: {outcome.figures['failed']}", flush=True)
    print(f"wrote {results_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
