"""Reading images from disk into RGB uint8 arrays, with errors that name the file and the fix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MIN_SIDE = 16
MAX_PIXELS = 200_000_000


def load_image(path: str | Path) -> np.ndarray:
    """Decode any common image file to an H x W x 3 RGB uint8 array.

    Grayscale is replicated to three channels, alpha is dropped, 16-bit images are scaled to 8 bits.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file not found", "Check the path.")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image", "Pass image files, or a folder that holds some.")
    if path.stat().st_size == 0:
        raise ImageError(path, "file is empty", "Copy the image again from its source.")
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(path, "not a readable image (corrupt, truncated or not an image format)",
                         "Re-export it as JPEG or PNG.")
    return to_rgb8(image, path)


def to_rgb8(image: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """Bring a decoded OpenCV image (BGR order, any depth or channel count) to RGB uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(source, f"unsupported pixel type {image.dtype}", "Convert it to 8-bit RGB.")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise ImageError(source, f"{image.shape[2]} channels", "Convert it to RGB.")
    check_size(image, source)
    return np.ascontiguousarray(image)


def check_size(image: np.ndarray, source: str | Path = "<array>") -> None:
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(source, f"image is {width}x{height} px, too small to analyse",
                         f"Use an image at least {MIN_SIDE} px on each side.")
    if height * width > MAX_PIXELS:
        raise ImageError(source, f"image is {width}x{height} px, larger than {MAX_PIXELS:,} pixels",
                         "Downscale it first.")


def as_rgb_array(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Validate an array given directly by a caller: H x W x 3 RGB uint8."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(source, "expected an H x W x 3 RGB uint8 array",
                         "Pass a path, or convert the array with runtime.imageio.to_rgb8.")
    check_size(image, source)
    return image


def collect_images(inputs: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into image paths; folders without images are reported as problems."""
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                problems.append((item, f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})"))
            found.extend(images)
        else:
            found.append(item)
    return found, problems


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def encode_png(image_rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()
