"""An explained prediction's files in memory: the report JSON, the heatmap PNG and the panel PNG, as `mnet run`
writes them and a server sends them back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.png import encode_png
from runtime.report import Explained
from runtime.report.panel import render_panel


@dataclass(frozen=True)
class Rendered:
    """An explained prediction's files in memory: the report (its heatmap file name not yet set), the heatmap
    PNG and the panel PNG (None when not asked for). What a server sends back."""

    report: dict
    heatmap_png: bytes
    panel_png: bytes | None


def render_outputs(result: Explained, panel: bool = True) -> Rendered:
    heatmap = encode_png(np.uint8(np.clip(result.heatmap, 0, 1) * 255))
    return Rendered(result.to_dict(), heatmap, encode_png(render_panel(result)) if panel else None)
