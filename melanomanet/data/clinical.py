"""Clinical-photo-style lesions with known truth: the harder test set for the ABCDE segmentation.

Unlike the dermoscopic close-ups of `synth` (a lesion covering 10-45 % of a vignetted view), these are what a
phone or a teledermatology camera sends: a wide view of skin with pores, freckles and sun damage, lit
unevenly (the light falls off across the frame), sometimes with hairs, a date stamp or a watermark, and a
lesion covering 0.5-10 % of the frame, sometimes pale and barely darker than the skin around it, sometimes
beside other lesions (the target is the one nearest the centre). Each kind stresses one of these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from melanomanet.data.synth import draw_hairs, lesion_area, lesion_outline, sample_params, smooth_noise
from runtime.abcde.palette import to_lab
from runtime.errors import ConfigError

KINDS = ("small_dark", "pale", "several", "hairy", "stamped")
WIDTH, HEIGHT = 640, 480
DARK_TONES = ((92, 58, 40), (70, 44, 34), (120, 76, 50))
PALE_TONES = ((196, 130, 112), (186, 128, 96), (200, 140, 120))


@dataclass(frozen=True)
class ClinicalScene:
    """One photo: the image, the target lesion's true mask (0/1), and what was drawn."""

    image: np.ndarray
    mask: np.ndarray
    kind: str
    target_share: float
    target_centre: tuple[float, float]
    lesions: int


def render_clinical(kind: str, seed: int, width: int = WIDTH, height: int = HEIGHT) -> ClinicalScene:
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    image = clinical_skin(rng, width, height)
    share = float(rng.uniform(0.005, 0.03) if kind in ("small_dark", "hairy") else rng.uniform(0.01, 0.10))
    centre = (width / 2 + rng.uniform(-0.08, 0.08) * width, height / 2 + rng.uniform(-0.08, 0.08) * height)
    others = []
    if kind == "several":
        for _ in range(int(rng.integers(1, 4))):
            angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0.30, 0.40)
            others.append((width / 2 + np.cos(angle) * reach * width, height / 2 + np.sin(angle) * reach * height))
    tone = pale_tone(rng, image, centre) if kind == "pale" else np.array(DARK_TONES[rng.integers(3)], np.float32)
    truth = np.zeros((height, width), np.uint8)
    for index, where in enumerate([centre, *others]):
        lesion_share = share if index == 0 else share * rng.uniform(0.5, 1.5)
        mask, alpha = lesion_shape(rng, where, lesion_share, width, height)
        colour = tone if index == 0 else np.array(DARK_TONES[rng.integers(3)], np.float32)
        if index == 0:
            truth = mask
        elif np.any(mask & cv2.dilate(truth, np.ones((15, 15), np.uint8))):
            continue
        image = paint(rng, image, alpha, colour)
    image = image * lighting(rng, width, height)[..., None]
    if kind == "hairy":
        image = draw_hairs(rng, image, int(rng.integers(15, 35)))
    image = np.clip(image, 0, 255).astype(np.uint8)
    if kind == "stamped":
        image = stamp(rng, image)
    return ClinicalScene(image, truth, kind, float(truth.mean()), centre, 1 + len(others))


def clinical_skin(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Skin without a dermoscope: a tone, blotchy redness of sun damage, pores and freckles."""
    size = max(width, height)
    tone = np.array([222, 176, 152], np.float32) + rng.normal(0, 8, 3)
    redness = np.clip(smooth_noise(rng, size, size / 14), 0, None)[:height, :width, None]
    skin = tone * (1 + 0.04 * smooth_noise(rng, size, size / 5)[:height, :width, None])
    skin = skin + redness * np.array([4, -10, -8], np.float32) * rng.uniform(0.3, 0.8)
    skin = skin * (1 + 0.025 * smooth_noise(rng, size, 0.8)[:height, :width, None])
    for _ in range(int(rng.integers(width * height // 600, width * height // 300))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        cv2.circle(skin, centre, 1, (skin[centre[1], centre[0]] * 0.9).tolist(), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(20, 80))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        radius = int(rng.integers(1, 4))
        cv2.circle(skin, centre, radius, (skin[centre[1], centre[0]] * rng.uniform(0.82, 0.92)).tolist(), -1,
                   cv2.LINE_AA)
    return skin


def lesion_shape(rng: np.random.Generator, centre: tuple[float, float], share: float, width: int,
                 height: int) -> tuple[np.ndarray, np.ndarray]:
    """A lesion outline (synth's, NV to MEL irregularity) scaled to `share` of the frame: (mask, soft alpha)."""
    params = sample_params(rng, str(rng.choice(["NV", "MEL", "BKL", "DF"])), hairs=False)
    params = replace(params, center=(0.0, 0.0))
    params = replace(params, radius=params.radius * np.sqrt(share * width * height / lesion_area(params) / height**2))
    outline = lesion_outline(params, height) + np.array(centre)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    blur = rng.uniform(0.6, 2.0) * max(1.0, np.sqrt(share) * 12)
    return mask, cv2.GaussianBlur(mask.astype(np.float32), (0, 0), blur)[..., None]


def pale_tone(rng: np.random.Generator, image: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """A pale pink or light-brown colour 7-12 CIELAB units from the skin at `centre`: low contrast."""
    skin = image[int(centre[1]), int(centre[0])].astype(np.float32)
    pale = np.array(PALE_TONES[rng.integers(3)], np.float32)
    full = np.linalg.norm(np.diff(to_lab(np.clip([[skin, pale]], 0, 255).astype(np.uint8))[0], axis=0))
    share = np.clip(rng.uniform(7, 12) / max(full, 1e-3), 0.2, 0.9)
    return skin * (1 - share) + pale * share


def paint(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    texture = 1 + 0.06 * smooth_noise(rng, max(width, height), max(width, height) / 60)[:height, :width, None]
    return image * (1 - alpha) + colour * texture * alpha


def lighting(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Light falling off across the frame from a random side (a gain of 1 down to 0.55-0.8)."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    along = (xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)
    along = (along - along.min()) / (along.max() - along.min())
    return 1 - rng.uniform(0.2, 0.45) * along**1.5


def stamp(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A camera date stamp in a corner and a translucent clinic watermark across the frame."""
    height, width = image.shape[:2]
    month, day, hour, minute = rng.integers(1, 13), rng.integers(1, 29), rng.integers(0, 24), rng.integers(0, 60)
    date = f"2026-{month:02d}-{day:02d} {hour:02d}:{minute:02d}"
    cv2.putText(image, date, (width - 250, height - 18), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 170, 40), 2,
                cv2.LINE_AA)
    overlay = image.copy()
    cv2.putText(overlay, "DERMA CLINIC", (int(width * 0.08), int(height * rng.uniform(0.25, 0.85))),
                cv2.FONT_HERSHEY_DUPLEX, 2.2, (255, 255, 255), 4, cv2.LINE_AA)
    return cv2.addWeighted(overlay, 0.35, image, 0.65, 0)


def write_clinical_set(out: str | Path, per_kind: int, seed: int, progress=None) -> Path:
    """Write `per_kind` photos of every kind (JPEG) with their truth masks (PNG) and an index (JSON)."""
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    index = []
    for kind_number, kind in enumerate(KINDS):
        for number in range(per_kind):
            scene = render_clinical(kind, seed * 100_000 + kind_number * 1_000 + number)
            name = f"CLIN_{kind}_{number:04d}"
            cv2.imwrite(str(out / f"{name}.jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(out / "truth" / f"{name}_mask.png"), scene.mask * 255)
            index.append({"image": f"{name}.jpg", "kind": kind, "target_share": scene.target_share,
                          "target_centre": scene.target_centre, "lesions": scene.lesions})
            if progress is not None:
                progress()
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return out / "index.json"
