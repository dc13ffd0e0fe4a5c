"""Procedural dermoscopy-like lesions with known truth, written in the ISIC 2019 layout.

Each class has a style: size, shape irregularity, asymmetry, border sharpness and a set of the six
dermoscopic colours. A class may also have subtypes drawn with their own style: 40 % of melanomas are
nevus-like (a nevus's size, colours and smooth border, but an asymmetric outline), so that, as in the clinic,
asymmetry is the one cue that tells them from nevi. The drawn parameters, the true lesion mask and the true
colour coverage are saved beside every image so that ABCDE measurements can be tested against truth.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.abcde.palette import DERMOSCOPIC_COLOURS
from runtime.manifest import CLASS_NAMES

GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
SYNTH_CLASSES = CLASS_NAMES[:-1]


@dataclass(frozen=True)
class Style:
    radius: tuple[float, float]
    irregularity: tuple[float, float]
    elongation: tuple[float, float]
    asymmetry: tuple[float, float]
    border_blur: tuple[float, float]
    colours: tuple[str, ...]
    colour_count: tuple[int, int]
    dots: tuple[int, int] = (0, 0)


STYLES = {
    "MEL": Style((0.22, 0.30), (0.10, 0.20), (1.1, 1.6), (0.25, 0.45), (0.5, 1.5),
                 ("dark_brown", "black", "blue_gray", "light_brown", "red", "white"), (3, 5), (4, 12)),
    "NV": Style((0.14, 0.22), (0.00, 0.03), (1.0, 1.25), (0.00, 0.05), (2.0, 4.0),
                ("light_brown", "dark_brown"), (1, 2)),
    "BCC": Style((0.18, 0.28), (0.04, 0.10), (1.0, 1.4), (0.05, 0.20), (1.0, 2.5),
                 ("red", "blue_gray", "white"), (2, 3), (3, 8)),
    "AK": Style((0.16, 0.26), (0.06, 0.14), (1.1, 1.5), (0.10, 0.25), (3.0, 6.0),
                ("red", "white", "light_brown"), (2, 3)),
    "BKL": Style((0.18, 0.28), (0.02, 0.07), (1.0, 1.5), (0.05, 0.15), (0.3, 1.0),
                 ("light_brown", "dark_brown", "white"), (2, 3), (6, 16)),
    "DF": Style((0.10, 0.16), (0.00, 0.04), (1.0, 1.2), (0.00, 0.06), (3.0, 5.0),
                ("light_brown", "white"), (2, 2)),
    "VASC": Style((0.12, 0.20), (0.01, 0.05), (1.0, 1.3), (0.00, 0.10), (0.3, 1.0),
                  ("red", "blue_gray"), (1, 2), (5, 12)),
    "SCC": Style((0.18, 0.28), (0.08, 0.16), (1.0, 1.5), (0.15, 0.35), (1.0, 3.0),
                 ("red", "white", "black"), (2, 3)),
}
SUBTYPES = {
    "MEL": (("nevus_like", 0.4, Style((0.14, 0.22), (0.00, 0.03), (1.0, 1.25), (0.45, 0.70), (2.0, 4.0),
                                         ("light_brown", "dark_brown"), (1, 2))),),
}


@dataclass(frozen=True)
class LesionParams:
    label: str
    radius: float
    irregularity: float
    elongation: float
    asymmetry: float
    border_blur: float
    colours: tuple[str, ...]
    rotation_deg: float
    center: tuple[float, float]
    dots: int
    hairs: int
    harmonic_phases: tuple[float, ...]
    seed: int
    subtype: str = "typical"


def sample_params(rng: np.random.Generator, label: str, hairs: bool = True) -> LesionParams:
    subtype, style = _pick_style(rng, label)
    count = int(rng.integers(style.colour_count[0], style.colour_count[1] + 1))
    colours = tuple(rng.choice(style.colours, size=min(count, len(style.colours)), replace=False))
    return LesionParams(
        label=label,
        radius=float(rng.uniform(*style.radius)),
        irregularity=float(rng.uniform(*style.irregularity)),
        elongation=float(rng.uniform(*style.elongation)),
        asymmetry=float(rng.uniform(*style.asymmetry)),
        border_blur=float(rng.uniform(*style.border_blur)),
        colours=colours,
        rotation_deg=float(rng.uniform(0, 180)),
        center=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.58))),
        dots=int(rng.integers(style.dots[0], style.dots[1] + 1)),
        hairs=int(rng.integers(0, 7)) if hairs else 0,
        harmonic_phases=tuple(float(x) for x in rng.uniform(0, 2 * np.pi, size=6)),
        seed=int(rng.integers(0, 2**31 - 1)),
        subtype=subtype,
    )


def _pick_style(rng: np.random.Generator, label: str) -> tuple[str, Style]:
    draw = rng.uniform() if label in SUBTYPES else 1.0
    for name, share, style in SUBTYPES.get(label, ()):
        if draw < share:
            return name, style
        draw -= share
    return "typical", STYLES[label]


def lesion_outline(params: LesionParams, size: int, points: int = 360) -> np.ndarray:
    """The lesion's boundary polygon in pixels (N x 2, x then y). Asymmetry widens one end of the lesion
    and bends its long axis, two shears that keep the area (a lopsided radius 1 + a cos(theta) would mostly
    have moved a round lesion, not made it asymmetric); irregularity adds lobes (harmonics 3 to 8)."""
    theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
    harmonics = sum(
        params.irregularity / (1 + 0.5 * k) * np.cos((k + 3) * theta + phase)
        for k, phase in enumerate(params.harmonic_phases)
    )
    x, y = (1 + harmonics) * np.cos(theta), (1 + harmonics) * np.sin(theta)
    y = y * (1 + params.asymmetry * x) + params.asymmetry / 2 * (x**2 - 0.5)
    scale = params.radius * size
    x, y = x * scale * np.sqrt(params.elongation), y * scale / np.sqrt(params.elongation)
    angle = np.deg2rad(params.rotation_deg)
    rotated_x = x * np.cos(angle) - y * np.sin(angle)
    rotated_y = x * np.sin(angle) + y * np.cos(angle)
    return np.stack([rotated_x + params.center[0] * size, rotated_y + params.center[1] * size], axis=1)


def lesion_area(params: LesionParams) -> float:
    """The outline's area as a fraction of the image (shoelace formula on a 1 x 1 image)."""
    x, y = lesion_outline(params, 1).T
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def render(params: LesionParams, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Draw one lesion: (RGB uint8 image, true mask uint8 0/1, true colour coverage by name)."""
    rng = np.random.default_rng(params.seed)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(lesion_outline(params, size) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    colour_map, coverage = _colour_regions(rng, mask, params.colours)
    colour_map = _add_dots(rng, colour_map, mask, params)
    texture = 1 + 0.05 * smooth_noise(rng, size, size / 40)[..., None]
    lesion = np.clip(colour_map * texture, 0, 255)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(params.border_blur, 0.3) * size / 256)[..., None]
    image = skin_texture(rng, size) * (1 - alpha) + lesion * alpha
    image = draw_hairs(rng, image, params.hairs)
    image = image * _vignette(size)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8), mask, coverage


def _colour_regions(rng, mask, colours):
    size = mask.shape[0]
    field = smooth_noise(rng, size, size / 12)
    inside = mask.astype(bool)
    order = np.argsort(field[inside])
    labels = np.zeros(order.size, np.int64)
    shares = rng.dirichlet(np.full(len(colours), 4.0)) * 0.7 + 0.3 / len(colours)
    bounds = np.round(np.cumsum(shares) * order.size).astype(int)
    start = 0
    for index, stop in enumerate(bounds):
        labels[order[start:stop]] = index
        start = stop
    palette = np.array([DERMOSCOPIC_COLOURS[name] for name in colours], np.float32)
    colour_map = np.zeros((size, size, 3), np.float32)
    colour_map[inside] = palette[labels]
    colour_map[~inside] = palette[labels].mean(axis=0)
    coverage = {name: float(np.mean(labels == i)) for i, name in enumerate(colours)}
    return colour_map, coverage


def _add_dots(rng, colour_map, mask, params):
    if params.dots == 0:
        return colour_map
    ys, xs = np.nonzero(mask)
    dark = np.array(DERMOSCOPIC_COLOURS["black" if "black" in params.colours else params.colours[0]], np.float32)
    size = mask.shape[0]
    for _ in range(params.dots):
        pick = rng.integers(0, len(xs))
        radius = max(1, int(rng.uniform(0.006, 0.014) * size))
        cv2.circle(colour_map, (int(xs[pick]), int(ys[pick])), radius, dark.tolist(), -1, cv2.LINE_AA)
    return colour_map


def smooth_noise(rng, size, sigma):
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def skin_texture(rng, size):
    tone = np.array([226, 178, 156], np.float32) + rng.normal(0, 10, 3)
    shading = 1 + 0.05 * smooth_noise(rng, size, size / 6)[..., None]
    grain = 1 + 0.02 * smooth_noise(rng, size, 1.0)[..., None]
    return tone * shading * grain


def draw_hairs(rng, image, count):
    size = image.shape[0]
    for _ in range(count):
        start, control, end = rng.uniform(0, size, (3, 2))
        t = np.linspace(0, 1, 60)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        shade = float(rng.uniform(20, 60))
        thickness = int(rng.integers(1, max(2, size // 128) + 1))
        cv2.polylines(image, [np.round(curve).astype(np.int32)], False, (shade, shade * 0.8, shade * 0.7),
                      thickness, cv2.LINE_AA)
    return image


def _vignette(size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    return np.clip((1.22 - distance) / 0.12, 0.04, 1.0)


def draw_balanced(rng: np.random.Generator, index: int, hairs: bool = True) -> LesionParams:
    """The default draw: the eight lesion classes in turn."""
    return sample_params(rng, SYNTH_CLASSES[index % len(SYNTH_CLASSES)], hairs=hairs)


def write_dataset(out: str | Path, count: int, seed: int, size: int = 256, hairs: bool = True,
                  progress=None, draw=draw_balanced) -> Path:
    """Write `count` lesions in the ISIC 2019 layout: images, GroundTruth CSV, and truth/ per image.
    `draw(rng, index, hairs)` gives each lesion's parameters (default: the eight classes in turn)."""
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        params = draw(rng, index, hairs)
        name = f"SYN_{seed:04d}_{index:06d}"
        write_example(out, name, params, size)
        rows.append([name] + [1.0 if c == params.label else 0.0 for c in CLASS_NAMES])
        if progress is not None:
            progress()
    with open(out / GROUND_TRUTH_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *CLASS_NAMES])
        writer.writerows(rows)
    return out / GROUND_TRUTH_CSV


def write_image(path: Path, params: LesionParams, size: int):
    image, mask, coverage = render(params, size)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return mask, coverage


def write_example(folder: Path, name: str, params: LesionParams, size: int) -> None:
    mask, coverage = write_image(folder / f"{name}.jpg", params, size)
    cv2.imwrite(str(folder / "truth" / f"{name}_mask.png"), mask * 255)
    truth = {**asdict(params), "size": size, "colour_coverage": coverage}
    (folder / "truth" / f"{name}.json").write_text(json.dumps(truth, indent=1))
