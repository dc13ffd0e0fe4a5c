"""An ONNX file's `metadata_props` (where the manifest travels) read straight from its protobuf wire format, for
backends that do not expose them (OpenVINO): the top-level fields are walked and the graph is skipped unread, so
neither the `onnx` package nor a session is needed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from runtime.errors import ManifestError

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def read_metadata(path: str | Path, data: bytes | None = None) -> dict[str, str]:
    """The model's metadata_props as a dict (`data`: the file's bytes, when already read); a file that is not an
    ONNX protobuf is an error naming it."""
    entries: dict[str, str] = {}
    with (io.BytesIO(data) if data is not None else open(path, "rb")) as handle:
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


# Where tensors sit in an ONNX protobuf: message -> {field number: the message type it holds}.
TENSOR_FIELDS = {
    "model": {7: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, EXTERNAL = 13, 14, 1


def external_tensors(data: bytes, path) -> int:
    """How many tensors of the model (initializers, constants, subgraphs') keep their values outside the file
    (ONNX external data): bytes a bundle's sha256 does not cover."""
    return _count_external(memoryview(data), "model", path)


def _count_external(payload: memoryview, kind: str, path) -> int:
    found = 0
    position = 0
    children = TENSOR_FIELDS.get(kind, {})
    while position < len(payload):
        tag, position = _varint_at(payload, position, path)
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, position = _varint_at(payload, position, path)
            if kind == "tensor" and field == TENSOR_DATA_LOCATION and value == EXTERNAL:
                found += 1
        elif wire in (FIXED64, FIXED32):
            position += 8 if wire == FIXED64 else 4
        elif wire == LENGTH_DELIMITED:
            length, position = _varint_at(payload, position, path)
            if position + length > len(payload):
                raise _not_onnx(path)
            if kind == "tensor" and field == TENSOR_EXTERNAL_DATA:
                found += 1
            elif field in children:
                found += _count_external(payload[position:position + length], children[field], path)
            position += length
        else:
            raise _not_onnx(path)
    return found
