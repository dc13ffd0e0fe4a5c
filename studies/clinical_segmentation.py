"""The ABCDE segmentation on the clinical-photo scenes and on today's dermoscopic set: the IoU distribution per
kind, and how the outline quality check decides (false-withhold and false-report rates).

Reproduces the tables of docs/abcde.md ("Clinical photos"): `python -m studies.clinical_segmentation --per-kind 40`
(about 2 CPU minutes). Before the change, the whole-view segmentation alone is the `whole view only` column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from melanomanet.data.clinical import KINDS, render_clinical
from melanomanet.data.synth import render, sample_params
from runtime.abcde.segment import segment, segment_view

GOOD, BAD = 0.7, 0.5


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return np.count_nonzero(first & second) / max(np.count_nonzero(first | second), 1)


def dermoscopic_scenes(count: int):
    """The scenes of tests/test_abcde.py: every class, four hairs each, 384 px."""
    for seed in range(count):
        params = sample_params(np.random.default_rng(100 + seed), ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC",
                                                                   "SCC")[seed % 8])
        image, truth, _ = render(params.__class__(**{**params.__dict__, "hairs": 4}), 384)
        yield image, truth


def main(per_kind: Annotated[int, typer.Option(help="Scenes of each clinical kind.")] = 40,
         out: Annotated[Optional[Path], typer.Option(help="Also write every figure to this JSON file.")] = None):
    sets = {"dermoscopic (today's)": list(dermoscopic_scenes(96))}
    for kind in KINDS:
        sets[kind] = [(scene.image, scene.mask) for scene in (render_clinical(kind, 1000 + n) for n in range(per_kind))]
    rows, decisions = {}, []
    for name, scenes in sets.items():
        final, whole = [], []
        for image, truth in scenes:
            found, alone = segment(image), segment_view(image, clinical=False)
            final.append(iou(found.mask, truth))
            whole.append(iou(alone.mask, truth))
            decisions += [(final[-1], found.quality.reliable), (whole[-1], alone.quality.reliable)]
        rows[name] = {"images": len(scenes), "iou_median": float(np.median(final)),
                      "iou_p10": float(np.percentile(final, 10)), "whole_view_only_median": float(np.median(whole))}
    scores = np.array([d[0] for d in decisions])
    reported = np.array([d[1] for d in decisions])
    good, bad = scores >= GOOD, scores < BAD
    rates = {"outlines": len(decisions), "good (IoU >= 0.7)": int(good.sum()), "bad (IoU < 0.5)": int(bad.sum()),
             "false_withhold": float(np.mean(~reported[good])), "false_report": float(np.mean(reported[bad]))}
    print(f"{'set':24s} {'n':>4s} {'IoU median':>10s} {'p10':>6s} {'whole view only':>16s}")
    for name, row in rows.items():
        print(f"{name:24s} {row['images']:4d} {row['iou_median']:10.3f} {row['iou_p10']:6.3f} "
              f"{row['whole_view_only_median']:16.3f}")
    print("quality check over every outline above (both routes):", json.dumps(rates))
    if out is not None:
        out.write_text(json.dumps({"sets": rows, "quality_check": rates}, indent=1))


if __name__ == "__main__":
    typer.run(main)
