"""What one image may ask for, checked once where it is made: every caller (the command line, the Python API,
a served request, `analyze`) builds or checks its values here, so a bad value gets the same one-line error."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.errors import ConfigError


def check_mm_per_px(value: float | None, option: str = "--mm-per-px") -> float | None:
    """None, or the millimetres one pixel spans (a finite number > 0)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):  # true is not 1.0 mm per pixel
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise ConfigError(f"{option} {value!r} is not a positive number: give the millimetres one pixel spans, "
                          "e.g. 0.02")
    return number


# The scales a dermatoscope or a camera gives a lesion: a dermatoscope's field of 10-25 mm over 500-6000 px (about
# 0.003-0.05 mm per pixel), a phone photo of a lesion 0.02-0.5 mm per pixel. The command line refuses a value
# outside PLAUSIBLE_MM_PER_PX unless told --force-scale (a typo of 5 for 0.05 makes a 2-metre lesion).
PLAUSIBLE_MM_PER_PX = (0.001, 1.0)


def check_plausible_scale(value: float | None, force: bool) -> None:
    """Refuse a --mm-per-px outside PLAUSIBLE_MM_PER_PX unless `force` (--force-scale)."""
    low, high = PLAUSIBLE_MM_PER_PX
    if value is not None and not force and not low <= value <= high:
        raise ConfigError(f"--mm-per-px {value:g} is outside what a dermatoscope or a camera gives ({low:g}-{high:g} "
                          "mm per pixel; 0.01-0.05 is typical of dermoscopy): check the calibration, or add "
                          "--force-scale to use it anyway")


def check_position(value: tuple[float, float] | None, option: str = "--lesion-at") -> tuple[float, float] | None:
    """None, or (x, y): a pixel position of the upright image, both finite and 0 or more."""
    if value is None:
        return None
    try:
        x, y = (float(part) for part in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} {value!r} is not X,Y: give the lesion's pixel position, e.g. 320,240") from None
    if not (x >= 0 and y >= 0 and math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"{option} {value!r}: X and Y are pixel positions, 0 or more")
    return x, y


@dataclass(frozen=True)
class ImageOptions:
    """What one image of a batch may ask for, over the predictor's defaults; checked when made. `cam_class` is
    looked up against the model's classes (in any case) by `runtime.manifest.find_class`."""

    cam_class: str | None = None
    mm_per_px: float | None = None
    lesion_at: tuple[float, float] | None = None

    def __post_init__(self):
        if self.cam_class is not None and not (isinstance(self.cam_class, str) and self.cam_class):
            raise ConfigError(f"--class {self.cam_class!r}: give a class name, e.g. MEL")
        object.__setattr__(self, "mm_per_px", check_mm_per_px(self.mm_per_px))
        object.__setattr__(self, "lesion_at", check_position(self.lesion_at))


def check_sampling(mc_samples, seed) -> None:
    """T (MC dropout samples) a whole number of at least 1; the seed a whole number of 0 or more."""
    if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
        raise ConfigError(f"--mc-samples must be a whole number of at least 1, got {mc_samples}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a whole number of 0 or more, got {seed}")
