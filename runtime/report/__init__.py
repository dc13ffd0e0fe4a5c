"""The report room: the JSON report (versioned schema) of one explained prediction, here; its heatmap and panel
PNGs in `render` and `panel`."""

from __future__ import annotations

import json
from typing import Any, Protocol

from runtime.manifest import CLASS_DESCRIPTIONS


class Explained(Protocol):
    """What a report, its heatmap and its panel are made from (`runtime.result.Result` is one), declared here so
    that the report room does not import the result that renders it."""

    label: str
    probabilities: Any
    class_names: tuple[str, ...]
    cam_class: str
    uncertainty: Any
    referral: Any
    alignment: Any
    concepts: Any
    abcde: Any
    image: str
    image_size: Any
    input_info: dict
    model: dict
    mc_seed: int | None
    temperature: float
    timings_ms: dict
    is_demo: bool
    untrained_classes: tuple[str, ...]
    heatmap_grid: tuple[int, int]
    heatmap: Any  # the GradCAM++ map at the view's size, 0-1
    lesion_mask: Any
    view_rgb: Any  # the image as analysed and drawn

REPORT_SCHEMA = "mnet.report/1"
DEMO_DISCLAIMER = ("DEMO WEIGHTS trained on synthetic lesions: these outputs say nothing about this lesion. "
                   "Not for diagnosis.")
DISCLAIMER = ("Research software, not a medical device: outputs are not validated for diagnosis and do not replace "
              "the judgement of a qualified clinician.")


def disclaimer(is_demo: bool) -> str:
    return f"{DEMO_DISCLAIMER} {DISCLAIMER}" if is_demo else DISCLAIMER


def report_json(report: dict) -> bytes:
    """A report's one serialisation, the bytes delivered: what a server sends, what `mnet run` writes to
    `<name>.json`, and what the API's audit record hashes for `Result.to_dict()`. Compact JSON, keys in the
    report's own order (classes in the model's order), so that an audit record's `report_sha256` always means
    the sha256 of the bytes delivered."""
    return json.dumps(report, separators=(",", ":")).encode()


def report_dict(result: Explained) -> dict:
    names = result.class_names
    uncertainty = result.uncertainty
    label = result.label
    return {
        "schema": REPORT_SCHEMA,
        "image": result.image,
        "image_size": list(result.image_size),
        "input": dict(result.input_info),
        "model": dict(result.model),
        "prediction": {
            "label": label,
            "description": CLASS_DESCRIPTIONS.get(label, label),
            "probability": float(result.probabilities.max()),
            "probabilities": {name: round(float(p), 6) for name, p in zip(names, result.probabilities)},
            "untrained_classes": list(result.untrained_classes),
        },
        "uncertainty": {
            "mean_probabilities": {n: round(float(p), 6) for n, p in zip(names, uncertainty.mean_probabilities)},
            "spread": {n: round(float(s), 6) for n, s in zip(names, uncertainty.spread)},
            "predictive": uncertainty.predictive,
            "aleatoric": uncertainty.aleatoric,
            "epistemic": uncertainty.epistemic,
            "flagged": uncertainty.flagged,
            "mc_samples": uncertainty.mc_samples,
            "seed": result.mc_seed,
            "units": "nats",
        },
        "referral": result.referral,
        "calibration": {"temperature": result.temperature,
                        "calibrated": result.temperature != 1.0},
        "gradcampp": {"class": names[result.cam_class], "heatmap": None,
                      "heatmap_grid": list(result.heatmap_grid), "alignment": result.alignment,
                      "peak_outside_lesion": None if result.alignment is None
                      else not result.alignment["pointing_game"]},
        "abcde": result.abcde,
        "concepts": result.concepts,
        "timings_ms": dict(result.timings_ms),
        "demo_weights": result.is_demo,
        "disclaimer": disclaimer(result.is_demo),
    }
