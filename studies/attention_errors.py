"""Does an attention peak outside the lesion predict a wrong answer? (issue 48 item 4: the panel states the peak
outside the lesion; it joins the review triggers only if it predicts errors on the validation split.)

On the bundle's own HAM10000 validation split (checked by its sha256, as `real_figures.py` checks it), through the
runtime with ABCD on: each image's top-1 correctness, `gradcampp.peak_outside_lesion` and the attention share
inside the outline. Prints the error rate with the peak inside and outside (lesion-bootstrap intervals), and the
AUROC of the inside share as a score of error, beside the AUROC of the shipped rule's own score.

    .venv/bin/python studies/attention_errors.py --bundle models/ham10000_lite0.onnx --data ../shared/data/real
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melanomanet.data.ham10000 import read_metadata  # noqa: E402
from melanomanet.data.layouts import prepare_data  # noqa: E402
from melanomanet.metrics import roc_auc  # noqa: E402
from runtime.predictor import Predictor  # noqa: E402
from studies.real_figures import with_interval  # noqa: E402


def measure(bundle: Path, data: Path, limit: int | None) -> dict:
    predictor = Predictor(bundle)
    recorded = predictor.manifest.extra["data"]
    prepared = prepare_data(data / "ham10000", recorded["split"]["seed"], layout=recorded["layout"])
    if prepared.record(recorded["split"]["seed"])["split"]["parts"]["val"]["sha256"] != \
            recorded["split"]["parts"]["val"]["sha256"]:
        raise SystemExit(f"{data}: the validation split differs from the one {bundle} records")
    indices = prepared.splits["val"][:limit]
    lesion = {row["image_id"]: row["lesion_id"] for row in read_metadata(data / "ham10000")}
    rows = []
    for count, index in enumerate(indices):
        name = prepared.labels.images[index]
        result = predictor.predict(prepared.image_root[name])
        if result.alignment is None:
            continue
        rows.append((lesion[name], int(np.argmax(result.probabilities)) == prepared.labels.targets[index],
                     not result.alignment["pointing_game"], result.alignment["inside_share"],
                     result.referral["value"]))
        if count % 200 == 0:
            print(f"  {count}/{len(indices)}", file=sys.stderr)
    groups = np.array([row[0] for row in rows])
    wrong = ~np.array([row[1] for row in rows])
    outside = np.array([row[2] for row in rows])
    inside_share = np.array([row[3] for row in rows])
    rule_value = np.array([row[4] for row in rows])

    def error_rate(where):
        return lambda idx: float(wrong[idx][where[idx]].mean()) if where[idx].any() else None

    return {"bundle": str(bundle), "images": len(indices), "with_outline": len(rows),
            "peak_outside_share": float(outside.mean()),
            "error_rate_peak_inside": with_interval(error_rate(~outside), groups),
            "error_rate_peak_outside": with_interval(error_rate(outside), groups),
            "auroc_error_by_outside_attention": roc_auc(wrong, 1 - inside_share),
            "auroc_error_by_rule_score": roc_auc(wrong, rule_value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/ham10000_lite0.onnx"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/real"))
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    print(json.dumps(measure(arguments.bundle, arguments.data, arguments.limit), indent=2))


if __name__ == "__main__":
    main()
