"""`mnet abcde` over many images: per image `<name>.json` (the measurements, status and reasons),
`<name>.mask.png` (the lesion mask, 0/255 at the image's upright size; none when the outline was withheld) and
`<name>.png` (the ABCD overlay), plus `summary.csv`, with `mnet run`'s guarantees: a file that cannot be read
gets a row and the batch goes on, each image's JSON is written last (a JSON on disk means a complete set), the
summary gains a flushed row per image, and rerunning the same command skips the images already done with the
same input (its sha256 is in the JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from runtime.imageio import Found, collect_images, load_image, output_names, write_atomic
from runtime.manifest import sha256_file
from runtime.outputs import (
    OutputFolder,
    failure_message,
    interrupted,
    prepare_output,
    recorded_output,
    summary_writer,
)

SUMMARY_FIELDS = ("input", "status", "domain", "asymmetry_points", "border_cutoff_segments", "colour_count", "colours",
                  "structures", "tds", "tds_complete", "feret_px", "feret_mm", "border_share", "edge_step", "json",
                  "mask", "reasons")
ANALYSIS_VERSION = "abcde-4"  # recorded in run.json: outputs of another analysis are not resumed
# Stems an input may not take: the batch's own files (run.json, summary.csv, errors.log).
RESERVED_STEMS = frozenset({"run", "summary", "errors"})


@dataclass(frozen=True)
class Done:
    input: str
    status: str  # measured, unreliable, no_lesion, failed or skipped
    resumed: bool = False


def analyze_batch(inputs: list, out: Path, mm_per_px: float | None = None, force: bool = False,
                  progress: Callable[[Path], None] | None = None,
                  collected: tuple[list[Found], list] | None = None) -> list[Done]:
    """Measure every image under `inputs` into `out`; one `Done` per input (and per skipped entry).
    `collected`: the result of `collect_images(inputs, out)` when the caller already has it."""
    from runtime.abcde.segmenter import segmenter_files

    out = Path(out)
    with OutputFolder(out):
        prepare_output(out, {"model_sha256": "+".join(segmenter_files().values()), "model": ANALYSIS_VERSION,
                             "options": {"mm_per_px": mm_per_px}}, force)
        found, skipped = collected or collect_images(inputs, out)
        return _measure_all(found, skipped, out, mm_per_px, force, progress)


def _measure_all(found, skipped, out: Path, mm_per_px, force, progress) -> list[Done]:
    done: list[Done] = []
    with summary_writer(out, SUMMARY_FIELDS) as write:

        def record(outcome: Done, row: dict) -> None:
            done.append(outcome)
            write(row)

        for path, reason in skipped:
            status, _, message = reason.partition(": ")
            record(Done(str(path), status), {"input": str(path), "status": status, "reasons": message})
        try:
            for entry, stem in zip(found, output_names(found, RESERVED_STEMS)):
                outcome, row = measure_one(entry.path, out, stem, mm_per_px, force)
                record(outcome, row)
                if progress is not None:
                    progress(entry.path)
        except KeyboardInterrupt:
            raise interrupted(sum(o.status not in ("failed", "skipped") for o in done), len(found), out) from None
    return done


def measure_one(path: Path, out: Path, stem: str, mm_per_px: float | None, force: bool) -> tuple[Done, dict]:
    """One image's files (the mask and overlay first, the JSON last), or its failure row."""
    try:
        digest = sha256_file(path) if path.is_file() else None
        result = None if force else finished(out, stem, digest)
        resumed = result is not None
        if result is None:
            result = write_image_outputs(path, out, stem, digest, mm_per_px)
    except Exception as error:  # noqa: BLE001 - one bad image must not stop the batch
        reason = failure_message(error, out, path)
        return Done(str(path), "failed"), {"input": str(path), "status": "failed", "reasons": reason}
    return Done(str(path), result["status"], resumed), summary_row(path, stem, result)


def write_image_outputs(path: Path, out: Path, stem: str, digest: str | None, mm_per_px: float | None) -> dict:
    from runtime.abcde.analyze import analyze_with_mask, checked_domain
    from runtime.abcde.overlay import abcde_overlay
    from runtime.png import encode_png

    rgb = load_image(path)
    analysis = analyze_with_mask(rgb, mm_per_px, domain=checked_domain(rgb))
    result = {"image": str(path), "input_sha256": digest, **analysis.measurements}
    (out / f"{stem}.mask.png").unlink(missing_ok=True)
    if analysis.mask is not None:
        write_atomic(out / f"{stem}.mask.png", encode_png((analysis.mask > 0).astype(np.uint8) * 255))
        result["mask_file"] = f"{stem}.mask.png"
    write_atomic(out / f"{stem}.png", encode_png(abcde_overlay(rgb, result, analysis.mask)))
    write_atomic(out / f"{stem}.json", json.dumps(result, indent=2).encode())
    return result


def finished(out: Path, stem: str, digest: str | None) -> dict | None:
    """The measurements of an image already done with this very input, when all its files are there."""
    result = recorded_output(out / f"{stem}.json", digest)
    if result is None or result.get("input_sha256") != digest or not (out / f"{stem}.png").exists():
        return None
    if result.get("mask_file") and not (out / result["mask_file"]).exists():
        return None
    return result


def summary_row(path: Path, stem: str, result: dict) -> dict:
    measured = result["status"] == "measured"
    segmentation = result["segmentation"]
    row = {"input": str(path), "status": result["status"], "domain": result.get("domain", ""), "json": f"{stem}.json",
           "mask": result.get("mask_file", ""), "border_share": segmentation.get("border_share", ""),
           "edge_step": segmentation.get("edge_step", ""), "reasons": "; ".join(result["reasons"])}
    if measured:
        row.update(asymmetry_points=result["asymmetry"]["points"],
                   border_cutoff_segments=result["border"]["cutoff_segments"],
                   colour_count=result["color"]["count"], colours=" ".join(result["color"]["present"]),
                   structures=" ".join(result["structures"]["present"]),
                   tds=result["tds"]["value"] if result["tds"] else "",
                   tds_complete=result["tds"]["complete"] if result["tds"] else "",
                   feret_px=round(result["diameter"]["feret_px"], 1),
                   feret_mm=result["diameter"]["feret_mm"] if result["diameter"]["feret_mm"] is not None else "")
    return row
