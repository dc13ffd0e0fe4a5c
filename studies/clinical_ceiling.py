"""How far can the shipped methods go on PAD-UFES-20's smartphone photos, with no quality check at all? Each photo is
outlined out of fold (the fold model of `mnet train-segmenter --clinical` that never saw its patient) by: the
clinical segmenter alone (the runtime's whole chain, `segment_learned`); the same with the network's probability
averaged over the photo and its mirror image (test-time flipping); the colour route alone (`segment_classical`);
and, as an upper bound no method reaches, the better of the clinical segmenter and the colour route per photo.
Nothing is withheld, so these are ceilings of the shown-outline figures in docs/abcde.md.

Reproduces "What the photos allow" in docs/abcde.md (after `mnet train-segmenter ... --clinical ...` wrote the fold
models): `python -m studies.clinical_ceiling ../shared/data/real/pad-ufes-20 --segmenter-folds build/segmenter-folds`
(about half a minute on 2 cores)."""

from __future__ import annotations

from contextlib import contextmanager
from multiprocessing import Pool
from pathlib import Path
from typing import Annotated, Iterator

import cv2
import numpy as np
import typer

from studies.abcd_agreement import cases, held_out_models, interval, jaccard

GOOD = 0.75  # the PAD-UFES-20 median target


@contextmanager
def mirrored_probability() -> Iterator[None]:
    """Inside the block the segmenters' probability is the mean over the image and its left-right mirror."""
    import runtime.abcde.segment as segment_module

    plain = segment_module.lesion_probability

    def averaged(image_rgb, size=None, kind="dermoscopy"):
        mirrored = plain(np.ascontiguousarray(image_rgb[:, ::-1]), size, kind)[:, ::-1]
        return (plain(image_rgb, size, kind) + mirrored) / 2

    segment_module.lesion_probability = averaged
    try:
        yield
    finally:
        segment_module.lesion_probability = plain


def outline_jaccards(case: tuple, model: Path) -> dict:
    from runtime.abcde.segment import WorkingView, segment_classical, segment_learned
    from runtime.abcde.segmenter import using_model
    from runtime.imageio import load_image

    name, image, mask, diagnosis = case
    rgb = load_image(image)
    truth = cv2.resize(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE), rgb.shape[1::-1],
                       interpolation=cv2.INTER_NEAREST) > 127
    with using_model(model, "clinical"):
        clinical = segment_learned(WorkingView(rgb), "clinical").mask > 0
        with mirrored_probability():
            flipped = segment_learned(WorkingView(rgb), "clinical").mask > 0
    colour = segment_classical(rgb).mask > 0
    scores = {"clinical segmenter": jaccard(clinical, truth), "clinical, mirror-averaged": jaccard(flipped, truth),
              "colour route": jaccard(colour, truth)}
    return {"image": name, "diagnosis": diagnosis, "area_ratio": clinical.sum() / max(truth.sum(), 1),
            **scores, "better of clinical and colour": max(scores["clinical segmenter"], scores["colour route"])}


def main(data: Annotated[Path, typer.Argument(help="The PAD-UFES-20 folder (images/, masks/, metadata.csv).")],
         segmenter_folds: Annotated[Path, typer.Option(help="The fold models of mnet train-segmenter --clinical.")],
         workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 2):
    _, found = cases(data)
    models = held_out_models(segmenter_folds)
    missing = [case[0] for case in found if case[0] not in models]
    if missing:
        raise typer.BadParameter(f"{len(missing)} photos (first {missing[0]}) are in no fold's held_out list; "
                                 "were the folds trained on this folder?")
    with Pool(workers) as pool:
        scored = pool.starmap(outline_jaccards, [(case, models[case[0]]) for case in found], chunksize=4)
    print(f"PAD-UFES-20, {len(scored)} photos, out of fold, nothing withheld")
    for method in [key for key in scored[0] if key not in ("image", "diagnosis", "area_ratio")]:
        values = np.array([s[method] for s in scored])
        low, high = interval(values)
        print(f"  {method:32s} median {np.median(values):.3f}  mean {values.mean():.3f} ({low:.3f}-{high:.3f})  "
              f"J >= {GOOD}: {int((values >= GOOD).sum())} of {len(values)}")
    print("  the clinical segmenter per diagnosis (median Jaccard; median area, ours over the mask's):")
    for diagnosis in sorted({s["diagnosis"] for s in scored}):
        chosen = [s for s in scored if s["diagnosis"] == diagnosis]
        print(f"    {diagnosis:4s} {len(chosen):3d} photos  {np.median([s['clinical segmenter'] for s in chosen]):.2f}"
              f"  area x{np.median([s['area_ratio'] for s in chosen]):.2f}")


if __name__ == "__main__":
    typer.run(main)
