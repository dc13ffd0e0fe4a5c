"""PNG encoding on every core: the rows are filtered in numpy ("Up": each byte minus the one above it) and
deflated in strips on threads, each strip ended with a full flush so that the strips join into one zlib stream
(pigz's method); zlib releases the GIL while it compresses. Readers see an ordinary PNG."""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2
LEVEL = 1
MIN_STRIP_BYTES = 256 * 1024
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, the "fastest" level mark; (0x78 * 256 + 0x01) % 31 == 0


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 H x W (gray) or H x W x 3 (RGB) image -> PNG bytes."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"encode_png takes uint8 H x W or H x W x 3 images, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(image).reshape(height, -1)
    scanlines = np.empty((height, rows.shape[1] + 1), np.uint8)
    scanlines[:, 0] = UP_FILTER
    scanlines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])
    colour_type = 2 if image.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", deflate(scanlines)) + chunk(b"IEND", b"")


def deflate(scanlines: np.ndarray) -> bytes:
    """One zlib stream of the scanlines, its strips compressed at once."""
    strips = max(1, min(workers(), scanlines.nbytes // MIN_STRIP_BYTES))
    parts = np.array_split(scanlines, strips)
    compressed = pool().map(compress_strip, parts, [index == len(parts) - 1 for index in range(len(parts))])
    return ZLIB_HEADER + b"".join(compressed) + struct.pack(">I", zlib.adler32(scanlines))


def compress_strip(strip: np.ndarray, last: bool) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(strip) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def workers() -> int:
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers(), thread_name_prefix="png")
