"""Images that are not dermoscopic lesions, for the out-of-distribution check of `mnet eval --ood`:
natural photographs (scikit-image's bundled data, cropped), plain skin, text and ruler close-ups, blurred and
overexposed frames of synthetic lesions, and a clinical-photo-like wide view with a tiny lesion."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from melanomanet.data.synth import draw_balanced, draw_hairs, render, skin_texture, smooth_noise

NATURAL_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "coins", "moon", "horse", "rocket",
                  "immunohistochemistry", "hubble_deep_field", "grass", "gravel", "brick", "clock", "retina")
KINDS = ("natural", "plain_skin", "text_ruler", "blurred", "overexposed", "clinical_wide")


def natural(rng: np.random.Generator, size: int) -> np.ndarray:
    import skimage.data

    picture = getattr(skimage.data, NATURAL_IMAGES[rng.integers(len(NATURAL_IMAGES))])()
    picture = np.dstack([picture] * 3) if picture.ndim == 2 else picture[..., :3]
    side = int(min(picture.shape[:2]) * rng.uniform(0.5, 1.0))
    top = rng.integers(0, picture.shape[0] - side + 1)
    left = rng.integers(0, picture.shape[1] - side + 1)
    crop = picture[top:top + side, left:left + side].astype(np.uint8)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def plain_skin(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.clip(draw_hairs(rng, skin_texture(rng, size), int(rng.integers(0, 4))), 0, 255).astype(np.uint8)


def text_ruler(rng: np.random.Generator, size: int) -> np.ndarray:
    image = np.full((size, size, 3), int(rng.integers(200, 250)), np.uint8)
    for row in range(int(rng.integers(2, 6))):
        words = "".join(rng.choice(list("ABCDEFGHKMNPRSTUVXYZ0123456789 mm/"), int(rng.integers(4, 12))))
        cv2.putText(image, words, (int(rng.integers(0, size // 4)), int((row + 1) * size / 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, size / 300, (20, 20, 20), max(1, size // 160), cv2.LINE_AA)
    baseline = int(size * rng.uniform(0.7, 0.9))
    for tick in range(0, size, max(4, size // 40)):
        length = size // 10 if tick % (size // 4) == 0 else size // 25
        cv2.line(image, (tick, baseline), (tick, baseline - length), (30, 30, 30), 1, cv2.LINE_AA)
    return image.astype(np.uint8)


def blurred(rng: np.random.Generator, size: int) -> np.ndarray:
    lesion, _, _ = render(draw_balanced(rng, int(rng.integers(8))), size)
    return cv2.GaussianBlur(lesion, (0, 0), size / rng.uniform(12, 20))


def overexposed(rng: np.random.Generator, size: int) -> np.ndarray:
    lesion, _, _ = render(draw_balanced(rng, int(rng.integers(8))), size)
    return np.clip(lesion.astype(np.float32) * rng.uniform(2.2, 3.5) + 60, 0, 255).astype(np.uint8)


def clinical_wide(rng: np.random.Generator, size: int) -> np.ndarray:
    """Skin filling the frame with lighting that falls off across it and a lesion of about 1 % of the view."""
    image = skin_texture(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    image *= (1 - 0.35 * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
    radius = size * rng.uniform(0.04, 0.07)
    centre = rng.uniform(0.3, 0.7, 2) * size
    blob = (np.hypot(xx * size - centre[0], yy * size - centre[1]) < radius * (1 + 0.2 * smooth_noise(rng, size, 8)))
    image[blob] = image[blob] * 0.45
    return np.clip(image, 0, 255).astype(np.uint8)


GENERATORS = {"natural": natural, "plain_skin": plain_skin, "text_ruler": text_ruler, "blurred": blurred,
              "overexposed": overexposed, "clinical_wide": clinical_wide}


def write_ood_set(out: str | Path, count: int, seed: int, size: int = 256, progress=None) -> dict[str, int]:
    """`count` images cycling through the kinds; `kinds.json` records each file's kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = {}
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        name = f"OOD_{seed:04d}_{index:06d}_{kind}.jpg"
        image = GENERATORS[kind](rng, size)
        cv2.imwrite(str(out / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        kinds[name] = kind
        if progress is not None:
            progress()
    (out / "kinds.json").write_text(json.dumps(kinds, indent=1))
    return {kind: list(kinds.values()).count(kind) for kind in KINDS}
