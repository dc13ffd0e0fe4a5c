"""Is `benchmarks/reference.py` as fast as the MelanomaNet reference code itself? Runs the reference code's own
classes (imported from a checkout of github.com/suxrobGM/explainable-melanoma, not copied) and our baseline on the
same model and weights, the same threads, stage by stage. Each stage is given in ms and in forwards (its cost
divided by that pipeline's forward).

Reproduces the table of docs/benchmarks.md ("Is the reference honest?"):
    python -m studies.reference_stage_costs --reference-src /path/to/explainable-melanoma/src --size 384

The reference code stages timed:
- forward: `MelanomaGradCAM.get_prediction`;
- MC: `MCDropoutEstimator(n_samples=10).estimate`;
- GradCAM++: `MelanomaGradCAM.generate_attention_map`;
- ABCDE: `ABCDEAnalyzer.analyze_image` on the image resized to the input size, with visualisations, as its
  `run_inference` calls it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from PIL import Image

from benchmarks.reference import ReferencePipeline

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "samples" / "ISIC_0034376.jpg"


def median_ms(action, repeats: int) -> float:
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def main(reference_src: Annotated[Path, typer.Option(help="The reference repository's src/ folder.")],
         size: Annotated[int, typer.Option(help="Input size in pixels.")] = 384,
         backbone: Annotated[str, typer.Option(help="efficientnet_v2_s, _m or _l (torchvision, as the reference "
                                                    "uses).")] = "efficientnet_v2_s",
         out: Annotated[Path, typer.Option(help="JSON with the figures.")] = Path("reference_stage_costs.json")):
    sys.path.insert(0, str(reference_src))
    from melanomanet.abcde.analyzer import ABCDEAnalyzer
    from melanomanet.data.transforms import get_val_transforms
    from melanomanet.models.melanomanet import MelanomaNet as ReferenceNet
    from melanomanet.uncertainty.mc_dropout import MCDropoutEstimator
    from melanomanet.utils.gradcam import MelanomaGradCAM

    torch.manual_seed(0)
    model = ReferenceNet(backbone, pretrained=False).eval()
    cpu = torch.device("cpu")
    original = Image.open(SAMPLE).convert("RGB")
    tensor = get_val_transforms(size)(original).unsqueeze(0)
    resized = (np.array(original.resize((size, size))) / 255.0 * 255).astype(np.uint8)
    cam, estimator, analyzer = MelanomaGradCAM(model, device=cpu), MCDropoutEstimator(model, 10, device=cpu), \
        ABCDEAnalyzer()
    theirs = {"forward": median_ms(lambda: cam.get_prediction(tensor), 7),
              "mc_t10": median_ms(lambda: estimator.estimate(tensor), 3),
              "gradcampp": median_ms(lambda: cam.generate_attention_map(tensor, 0), 3),
              "abcde": median_ms(lambda: analyzer.analyze_image(resized, return_visualizations=True), 3)}
    baseline = ReferencePipeline(model, "backbone", size, 10)
    baseline.layer = model.get_last_conv_layer()
    image = np.asarray(original)
    ours = {"forward": median_ms(lambda: baseline.forward(tensor), 7),
            "mc_t10": median_ms(lambda: baseline.mc_dropout(tensor, 10), 3),
            "gradcampp": median_ms(lambda: baseline.gradcampp(tensor, 0), 3),
            "abcde": median_ms(lambda: baseline.abcde(image), 3)}
    figures = {"threads": torch.get_num_threads(), "size": size, "backbone": backbone,
               "reference_code_ms": theirs, "benchmarks_reference_ms": ours,
               "in_forwards": {name: {"reference_code": theirs[name] / theirs["forward"],
                                      "benchmarks_reference": ours[name] / ours["forward"]} for name in theirs}}
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    typer.run(main)
