"""An ONNX file's `metadata_props` (where the manifest travels) read straight from its protobuf wire format, for
backends that do not expose them (OpenVINO): the top-level fields are walked and the graph is skipped unread, so
neither the `onnx` package nor a session is needed."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from runtime.errors import ManifestError

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def read_metadata(path: str | Path) -> dict[str, str]:
    """The model's metadata_props as a dict; a file that is not an ONNX protobuf is an error naming it."""
    entries: dict[str, str] = {}
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        while handle.tell() < size:
            field, wire = _tag(handle, path)
            if wire == VARINT:
                _varint(handle, path)
            elif wire in (FIXED64, FIXED32):
                handle.seek(8 if wire == FIXED64 else 4, 1)
            elif wire == LENGTH_DELIMITED:
                length = _varint(handle, path)
                if handle.tell() + length > size:
                    raise _not_onnx(path)
                if field == METADATA_PROPS:
                    key, value = _entry(handle.read(length), path)
                    entries[key] = value
                else:
                    handle.seek(length, 1)
            else:
                raise _not_onnx(path)
    return entries


def _entry(payload: bytes, path) -> tuple[str, str]:
    fields = {1: "", 2: ""}
    position = 0
    while position < len(payload):
        tag, position = _varint_at(payload, position, path)
        if tag & 7 != LENGTH_DELIMITED:
            raise _not_onnx(path)
        length, position = _varint_at(payload, position, path)
        fields[tag >> 3] = payload[position:position + length].decode("utf-8", "replace")
        position += length
    return fields[1], fields[2]


def _tag(handle: BinaryIO, path) -> tuple[int, int]:
    tag = _varint(handle, path)
    return tag >> 3, tag & 7


def _varint(handle: BinaryIO, path) -> int:
    value = shift = 0
    while True:
        byte = handle.read(1)
        if not byte or shift > 63:
            raise _not_onnx(path)
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _varint_at(payload: bytes, position: int, path) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(payload) or shift > 63:
            raise _not_onnx(path)
        byte = payload[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _not_onnx(path) -> ManifestError:
    return ManifestError(f"{path}: not an ONNX model (its protobuf fields do not parse); export one with "
                         "`mnet-export onnx`")
