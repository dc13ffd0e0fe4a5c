"""`Result`: one explained prediction, as the predictor makes it and the report, panel and batch read it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.report import report_dict
from runtime.uncertainty import Uncertainty


@dataclass
class Result:
    image: str
    image_size: tuple[int, int]
    probabilities: np.ndarray
    uncertainty: Uncertainty
    cam_class: int
    heatmap: np.ndarray
    class_maps: np.ndarray
    abcde: dict | None
    alignment: dict | None
    lesion_mask: np.ndarray | None
    timings_ms: dict
    model: dict
    class_names: tuple[str, ...]
    is_demo: bool
    concepts: dict | None = None
    referral: dict | None = None
    temperature: float = 1.0
    input_info: dict = field(default_factory=dict)
    view_rgb: np.ndarray | None = None  # the image as analysed and drawn (at most MAX_ANALYSIS_SIDE px)
    mc_seed: int | None = None
    untrained_classes: tuple[str, ...] = ()

    @property
    def heatmap_grid(self) -> tuple[int, int]:
        """Rows and columns of the target layer's map: the heatmap's true resolution, however large it is drawn."""
        return tuple(int(n) for n in self.class_maps.shape[-2:])

    @property
    def label(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict:
        """The JSON report (schema mnet.report/1, docs/report.md), as `mnet run` writes it but for
        `gradcampp.heatmap`, the heatmap PNG's file name, which only a written report has (null here)."""
        return report_dict(self)
