"""Fast PNG encoding: the rows are filtered in numpy ("Up": each byte minus the one above it) and deflated by
Intel's ISA-L (`isal`), which compresses at zlib level 1's ratio several times faster than zlib and releases the
GIL. Readers see an ordinary PNG."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

from runtime.errors import ImageError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2
LEVEL = 1


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 H x W (gray) or H x W x 3 (RGB) image -> PNG bytes."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ImageError("<array>", f"encode_png takes uint8 H x W or H x W x 3 images, not {image.dtype} "
                         f"{image.shape}", "Convert it to uint8 gray or RGB first")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(image).reshape(height, -1)
    scanlines = np.empty((height, rows.shape[1] + 1), np.uint8)
    scanlines[:, 0] = UP_FILTER
    scanlines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])
    colour_type = 2 if image.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = isal_zlib.compress(scanlines, LEVEL)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
