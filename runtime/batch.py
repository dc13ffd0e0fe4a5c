"""`mnet run` over many files: one report and panel per image, a summary CSV, nothing lost on bad input."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import MnetError
from runtime.imageio import collect_images, encode_png, write_atomic
from runtime.panel import render_panel

SUMMARY_FIELDS = ("input", "status", "label", "probability", "explained_class", "flagged", "predictive_entropy",
                  "report", "error")


@dataclass
class Outcome:
    input: str
    status: str
    row: dict
    result: object | None = None


def write_outputs(result, out: Path, stem: str) -> dict:
    heatmap_name = f"{stem}.gradcampp.png"
    write_atomic(out / heatmap_name, cv2.imencode(".png", np.uint8(np.clip(result.heatmap, 0, 1) * 255))[1].tobytes())
    result.extra["heatmap_file"] = heatmap_name
    report = result.to_dict()
    write_atomic(out / f"{stem}.json", json.dumps(report, indent=2).encode())
    write_atomic(out / f"{stem}.png", encode_png(render_panel(result)))
    return report


def run_batch(predictor, inputs: list, out: Path, cam_class: str | None = None, progress=None,
              collected: tuple[list[Path], list] | None = None) -> list[Outcome]:
    """`collected`: the result of `collect_images(inputs)` when the caller already has it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, problems = collected or collect_images(inputs)
    outcomes = [Outcome(str(path), "failed", _row(path, "failed", error=message)) for path, message in problems]
    stems: dict[str, int] = {}
    for path in files:
        stem = _unique_stem(path, stems)
        try:
            result = predictor.predict(path, cam_class)
            report = write_outputs(result, out, stem)
            row = _row(path, "ok", label=report["prediction"]["label"],
                       probability=round(report["prediction"]["probability"], 4),
                       explained_class=report["gradcampp"]["class"],
                       flagged=report["uncertainty"]["flagged"],
                       predictive_entropy=round(report["uncertainty"]["predictive"], 4), report=f"{stem}.json")
            outcomes.append(Outcome(str(path), "ok", row, result))
        except (MnetError, OSError) as error:
            outcomes.append(Outcome(str(path), "failed", _row(path, "failed", error=str(error))))
        if progress is not None:
            progress(path)
    write_summary(out / "summary.csv", outcomes)
    return outcomes


def write_summary(path: Path, outcomes: list[Outcome]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    for outcome in outcomes:
        writer.writerow(outcome.row)
    write_atomic(path, buffer.getvalue().encode())


def _row(path, status, **values) -> dict:
    return {"input": str(path), "status": status, **{k: values.get(k, "") for k in SUMMARY_FIELDS[2:]}}


def _unique_stem(path: Path, seen: dict[str, int]) -> str:
    stem = path.stem
    seen[stem] = seen.get(stem, 0) + 1
    return stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
