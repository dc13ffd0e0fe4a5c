"""Reading images from disk into RGB uint8 arrays, with errors that name the file and the fix."""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import struct
import tempfile
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import ConfigError, ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Lesion masks kept beside the images by data sets and by this project (mnet synth-clinical's truth/, HAM10000's
# and PH2's masks/, ISIC's *_segmentation.png, mnet abcde's *.mask.png): a folder scan skips them, saying so.
MASK_FOLDERS = ("truth", "masks")
MASK_SUFFIXES = ("_segmentation.png", "_lesion.png", "_mask.png", ".mask.png")
# Lists of image paths `mnet run` reads (an archive's index): a CSV or Parquet file with a `path` column.
LIST_SUFFIXES = (".csv", ".parquet")
LIST_COLUMN = "path"
MIN_SIDE = 16
MAX_PIXELS = 200_000_000
EXIF_ORIENTATION = 0x0112
EXIF_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP")  # a PNG's EXIF may follow its pixels: not read
ORIENTATIONS = range(1, 9)
SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PILLOW_LIMIT_LIFTED = threading.Lock()


def load_image(path: str | Path) -> np.ndarray:
    """Decode any common image file to an H x W x 3 RGB uint8 array, turned upright as its EXIF orientation says.

    Grayscale is replicated to three channels, transparency is composited on white (a fully transparent image is
    refused), 16-bit images are scaled to 8 bits.
    """
    return read_image(path)[0]


def read_image(path: str | Path) -> tuple[np.ndarray, dict]:
    """`load_image`, and what was learnt on the way: the format and the EXIF orientation applied.

    The header is read first: a file that declares more pixels than MAX_PIXELS is refused before anything is
    decoded. Any decoder failure becomes an ImageError naming the file."""
    return decode_image(read_image_file(path), path)


def read_image_file(path: str | Path) -> bytes:
    """An image file's bytes, read once (what `read_image` decodes and a caller may hash), or an ImageError
    naming the file: missing, a folder, or empty."""
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file not found", "Check the path.", usage=True)
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image", "Pass image files, or a folder that holds some.")
    if path.stat().st_size == 0:
        raise ImageError(path, "file is empty", "Copy the image again from its source.")
    return path.read_bytes()


def decode_image(data: bytes, source: str | Path, max_pixels: int = MAX_PIXELS,
                 over_limit_fix: str = "Downscale it first.") -> tuple[np.ndarray, dict]:
    """`read_image` of an encoded image held in memory (a request's bytes); errors name `source`. A header
    declaring more than `max_pixels` is refused, saying `over_limit_fix`."""
    if len(data) == 0:
        raise ImageError(source, "is empty (0 bytes)", "Send the encoded image file (JPEG or PNG).")
    header = probe(io.BytesIO(data), source)
    if header["width"] * header["height"] > max_pixels:
        raise ImageError(source, f"its header declares {header['width']}x{header['height']} px, more than "
                                 f"{max_pixels:,} pixels; it was not decoded", over_limit_fix)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except Exception as error:
        raise ImageError(source, f"the decoder failed ({str(error).splitlines()[0][:120]})",
                         "Re-export it as JPEG or PNG.") from None
    if image is None:
        raise ImageError(source, "not a readable image (corrupt, truncated or not an image format)",
                         "Re-export it as JPEG or PNG.")
    rgb = upright(to_rgb8(image, source), header["exif_orientation"])
    return rgb, header


def probe(stream: io.BytesIO, source: str | Path) -> dict:
    """Format, size and EXIF orientation from the image's header alone (Pillow opens lazily, decodes nothing).
    Pillow's own pixel limit is lifted while it reads the header: MAX_PIXELS is the limit, checked here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _PILLOW_LIMIT_LIFTED, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on corrupt metadata: the file is judged below
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(stream) as handle:
                    width, height = handle.size
                    image_format = handle.format
                    if width * height > MAX_PIXELS:
                        raise ImageError(source, f"its header declares {width}x{height} px, more than "
                                                 f"{MAX_PIXELS:,} pixels; it was not decoded", "Downscale it first.")
                    orientation = int(handle.getexif().get(EXIF_ORIENTATION, 1)) \
                        if image_format in EXIF_FORMATS else 1
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        detail = "no known image format" if isinstance(error, UnidentifiedImageError) else str(error)[:120]
        raise ImageError(source, f"not a readable image ({type(error).__name__}: {detail})",
                         "Re-export it as JPEG or PNG.") from None
    return {"format": image_format, "width": width, "height": height,
            "exif_orientation": orientation if orientation in ORIENTATIONS else 1}


UPRIGHT = {
    2: lambda image: image[:, ::-1],
    3: lambda image: image[::-1, ::-1],
    4: lambda image: image[::-1],
    5: lambda image: image.transpose(1, 0, 2),
    6: lambda image: np.rot90(image, k=-1),
    7: lambda image: image.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda image: np.rot90(image, k=1),
}


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) as image viewers do."""
    return np.ascontiguousarray(UPRIGHT[orientation](image)) if orientation in UPRIGHT else image


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
        image = composite_on_white(image, source)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise ImageError(source, f"{image.shape[2]} channels", "Convert it to RGB.")
    check_size(image, source)
    return np.ascontiguousarray(image)


def composite_on_white(bgra: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """RGB of an 8-bit BGRA image laid on white, as a viewer shows it; an image with nothing opaque is refused."""
    alpha = bgra[..., 3:].astype(np.float32) / 255
    if not np.any(alpha > 0):
        raise ImageError(source, "is fully transparent (its alpha channel is 0 everywhere): there is nothing to see",
                         "Export the image without transparency.")
    rgb = cv2.cvtColor(np.ascontiguousarray(bgra[..., :3]), cv2.COLOR_BGR2RGB).astype(np.float32)
    return np.round(rgb * alpha + 255 * (1 - alpha)).astype(np.uint8)


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


@dataclass(frozen=True)
class Found:
    """An image to process, with the input root its output name is made from."""

    path: Path
    root: Path


def collect_images(inputs: list[str | Path], exclude: Path | None = None) -> tuple[list[Found], list[tuple[Path, str]]]:
    """Expand files and folders into images to process, and every other entry of a scanned folder with the reason
    it is skipped (unsupported format, broken link, link loop, a folder named like an image). Links to folders
    are not followed; `exclude` (the output folder) is not scanned. A folder without any image is a problem."""
    found: list[Found] = []
    skipped: list[tuple[Path, str]] = []
    excluded = exclude.resolve() if exclude is not None and exclude.exists() else None
    for item in map(Path, inputs):
        if item.suffix.lower() in LIST_SUFFIXES and item.is_file():
            found.extend(Found(path, path.parent) for path in listed_images(item))
            continue
        if not item.is_dir():
            found.append(Found(item, item.parent))
            continue
        before = len(found)
        for folder, folders, files in os.walk(item, followlinks=False):
            folders.sort()
            for name in list(folders):
                entry = Path(folder) / name
                if excluded is not None and entry.resolve() == excluded:
                    folders.remove(name)
                elif entry.is_symlink():
                    skipped.append((entry, "skipped: a link to a folder (links are not followed)"))
                elif entry.suffix.lower() in IMAGE_SUFFIXES:
                    skipped.append((entry, "skipped: a folder named like an image file (its contents are scanned)"))
                elif name.lower() in MASK_FOLDERS:
                    folders.remove(name)
                    skipped.append((entry, "skipped: a folder of lesion masks, not photos (name its files to "
                                           "explain them)"))
            for name in sorted(files):
                entry = Path(folder) / name
                reason = _skip_reason(entry)
                if reason:
                    skipped.append((entry, f"skipped: {reason}"))
                else:
                    found.append(Found(entry, item))
        if len(found) == before:
            skipped.append((item, f"failed: {item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})"))
    return found, skipped


def listed_images(listing: Path) -> list[Path]:
    """The images a list names, in its order: the `path` column of a CSV (header row first; a one-column CSV
    may name it otherwise) or of a Parquet file (read with pyarrow, which the `ray` extra installs). Relative
    paths are taken from the list's folder."""
    read = _parquet_column if listing.suffix.lower() == ".parquet" else _csv_column
    try:
        names = [name.strip() for name in read(listing) if name and name.strip()]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ImageError(listing, f"cannot read this list of images ({error})", LIST_FIX, usage=True) from error
    if not names:
        raise ImageError(listing, "the list names no images", LIST_FIX, usage=True)
    return [path if path.is_absolute() else listing.parent / path for path in map(Path, names)]


LIST_FIX = f"Give it a '{LIST_COLUMN}' column of image paths, one row per image"


def _csv_column(listing: Path) -> list[str]:
    with open(listing, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header = [name.strip() for name in rows[0]] if rows else []
    if LIST_COLUMN not in header and len(header) != 1:
        raise ValueError(f"no '{LIST_COLUMN}' column; its header: {', '.join(header) or 'none'}")
    column = header.index(LIST_COLUMN) if LIST_COLUMN in header else 0
    return [row[column] for row in rows[1:] if len(row) > column]


def _parquet_column(listing: Path) -> list[str]:
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ImageError(listing, "reading a Parquet list needs pyarrow, which is not installed",
                         "Install the ray extra (pip install 'melanomanet-edge[ray]') or give a CSV list",
                         usage=True) from error
    table = parquet.read_table(listing)
    if LIST_COLUMN not in table.column_names:
        raise ValueError(f"no '{LIST_COLUMN}' column; it has {', '.join(table.column_names)}")
    return [str(value) for value in table.column(LIST_COLUMN).to_pylist() if value is not None]


def _skip_reason(entry: Path) -> str | None:
    if entry.name.lower().endswith(MASK_SUFFIXES):
        return "a lesion mask, not a photo (name the file to explain it anyway)"
    try:
        entry.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a link loop"
        return "a broken link" if entry.is_symlink() else f"cannot be read ({error.strerror})"
    if not entry.is_file():
        return "not a regular file"
    if entry.suffix.lower() not in IMAGE_SUFFIXES:
        return f"unsupported format ({entry.suffix or 'no extension'}); convert it to JPEG or PNG"
    return None


def open_no_follow(path: str | Path, mode: str = "w"):
    """A text file opened for writing ('w') or appending ('a') that refuses to write through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    try:
        descriptor = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"{path}: is a symbolic link; the run does not write through links in its output "
                              "folder: remove the link and rerun") from None
        raise
    return os.fdopen(descriptor, mode, newline="")


def output_names(found: list[Found], reserved: frozenset[str] = frozenset()) -> list[str]:
    """A distinct, file-system-safe name per input: its path relative to its input root without the extension,
    lengthened by parent folders (then the extension) only where two inputs would share a name or an input
    would take one of the `reserved` names (the batch's own files)."""
    parts = [list(entry.path.relative_to(entry.root).parts) if entry.path.is_relative_to(entry.root)
             else [entry.path.name] for entry in found]
    absolute = [entry.path.absolute().parts for entry in found]
    depth = [len(p) for p in parts]
    keep_suffix = [False] * len(found)

    def name(index: int) -> str:
        pieces = list(absolute[index][-depth[index]:]) if depth[index] > len(parts[index]) else parts[index]
        last = pieces[-1] if keep_suffix[index] else Path(pieces[-1]).stem
        return SAFE.sub("_", "__".join([*pieces[:-1], last]))

    for _ in range(64):
        names = [name(i) for i in range(len(found))]
        counts = Counter(names)
        clashes = [i for i, n in enumerate(names) if counts[n] > 1 or n in reserved]
        if not clashes:
            return names
        for index in clashes:
            if depth[index] < len(absolute[index]) - 1:
                depth[index] += 1
            else:
                keep_suffix[index] = True
    return [f"{n}-{i}" for i, n in enumerate(names)]


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~current_umask()  # what open() would give a new file: the umask honoured


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file. The rename
    replaces a link planted at `path` instead of writing through it; the file gets the umask's mode."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
