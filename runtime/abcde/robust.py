"""The robust centre and spread the segmentation thresholds from: the median and the normalised median absolute
deviation (1.4826 x MAD, the standard deviation for Gaussian noise, unmoved by a lesion among the samples)."""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826


def median_spread(values: np.ndarray) -> tuple[float, float]:
    centre = float(np.median(values))
    return centre, MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
