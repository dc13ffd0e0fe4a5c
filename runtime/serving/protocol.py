"""The contract between a client and the `melanomanet` model served by Triton, defined once: tensor names, request
parameters, and what one request's images turn into. Plain numpy; no Triton import, so it is tested directly."""

from __future__ import annotations

import base64
import binascii
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from runtime.abcde.api import parse_point
from runtime.errors import ConfigError, ImageError, MnetError
from runtime.manifest import find_class
from runtime.options import ImageOptions, check_mm_per_px
from runtime.predictor import Predictor
from runtime.report import report_json
from runtime.report.render import render_outputs
from runtime.result import Result

MODEL_NAME = "melanomanet"
ONNX_MODEL_NAME = "melanomanet_onnx"
IMAGE_INPUT = "image"
REPORT_OUTPUT = "report"
PROBABILITIES_OUTPUT = "probabilities"
HEATMAP_OUTPUT = "heatmap_png"
PANEL_OUTPUT = "panel_png"
PARAMETERS = {"class": "explain this class instead of the predicted one (e.g. MEL)",
              "mm_per_px": "millimetres per pixel (diameters in mm)",
              "lesion_at": "X,Y: where the lesion is, in pixels of the upright image",
              "name": "the image's name in the report (default: request)",
              "panel": "true: also return the PNG panel"}


@dataclass(frozen=True)
class ImageRequest:
    """One image as a request carries it: its encoded bytes and the request's parameters."""

    data: bytes
    name: str
    options: ImageOptions
    panel: bool = False


def parse_request(parameters: dict, class_names: tuple[str, ...]) -> tuple[str, ImageOptions, bool]:
    """A request's parameters (Triton's request parameters: strings, numbers or booleans), checked: the images'
    name, their options, and whether the panel is wanted."""
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown request parameter {', '.join(map(repr, unknown))}; known: "
                          + "; ".join(f"{key} ({meaning})" for key, meaning in PARAMETERS.items()))
    cam_class = parameters.get("class")
    if cam_class is not None:
        cam_class = class_names[find_class(str(cam_class), class_names)]
    lesion_at = parameters.get("lesion_at")
    return (str(parameters.get("name", "request")),
            ImageOptions(cam_class, check_mm_per_px(parameters.get("mm_per_px"), "mm_per_px"),
                         None if lesion_at is None else parse_point(str(lesion_at), "lesion_at")),
            _flag(parameters.get("panel", False)))


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"panel {value!r} is not true or false")


def answer(predictor: Predictor, requests: list[tuple[np.ndarray, dict]], pool: Executor | None = None,
           max_request_bytes: int | None = None) -> list[dict[str, np.ndarray] | MnetError]:
    """Triton's batch of requests, each (its `image` tensor: one or more encoded images; its parameters) ->
    each request's reply tensors (one row per image) or the error that answers it. All images of the batch go
    through the bundle together; with a `pool`, they are decoded, explained and encoded on its threads. A request
    whose images hold more than `max_request_bytes` is refused before anything is decoded."""
    items, owners, replies = [], [], [None] * len(requests)
    for index, (images, parameters) in enumerate(requests):
        try:
            encoded = np.asarray(images, dtype=object).reshape(-1)
            check_request_size(encoded, max_request_bytes, str(parameters.get("name", "the request")))
            name, options, panel = parse_request(parameters, predictor.manifest.class_names)
            given = [ImageRequest(as_bytes(data), name, options, panel) for data in encoded]
        except MnetError as error:
            replies[index] = error.as_outcome()
            continue
        items += given
        owners += [index] * len(given)
    results = explain_requests(predictor, items, pool)
    encoded = list((pool.map if pool is not None and len(items) > 1 else map)(
        lambda result, item: result if isinstance(result, MnetError) else reply_arrays(result, item.panel),
        results, items))
    rows: dict[int, list] = {}
    for owner, reply in zip(owners, encoded):
        if isinstance(replies[owner], MnetError):
            continue
        if isinstance(reply, MnetError):
            replies[owner] = reply
            continue
        rows.setdefault(owner, []).append(reply)
    for owner, arrays in rows.items():
        if replies[owner] is None:
            replies[owner] = {name: np.concatenate([row[name] for row in arrays]) for name in arrays[0]}
    return replies


def check_request_size(encoded: np.ndarray, max_request_bytes: int | None, name: str = "the request") -> None:
    """Refuse a request whose encoded images (its `image` tensor, flat) add up to more than the server's limit
    (`mnet serve --max-request-mb`), before anything is decoded or copied."""
    if max_request_bytes is None:
        return
    size = sum(len(data) for data in encoded if isinstance(data, (bytes, bytearray)))
    if size > max_request_bytes:
        raise ImageError(name, f"its image data is {size / 2**20:.1f} MB, over this server's limit of "
                         f"{max_request_bytes / 2**20:g} MB", "Send a smaller file (re-encode it as JPEG, or downscale "
                         "it), or start the server with a larger `mnet serve --max-request-mb`")


def is_client_error(error: MnetError) -> bool:
    """A request the client can fix (a bad image or parameter: HTTP 400), not a failure of the server's."""
    return isinstance(error, (ImageError, ConfigError))


def as_bytes(data) -> bytes:
    """The encoded image: the BYTES element itself, or, from a JSON client (curl) that can only send text, the
    base64 of the file."""
    if not isinstance(data, (bytes, bytearray)):
        raise ConfigError(f"the image input holds {type(data).__name__}, not bytes: send the encoded image file as "
                          "BYTES (TYPE_STRING)")
    try:
        return base64.b64decode(bytes(data), validate=True) or bytes(data)
    except (binascii.Error, ValueError):
        return bytes(data)  # an image file's bytes are never valid base64: its first byte is not


def explain_requests(predictor: Predictor, requests: list[ImageRequest],
                     pool: Executor | None = None) -> list[Result | MnetError]:
    """One explained prediction per request, batched through the bundle when it allows; each request's error
    stays its own."""
    return predictor.predict_batch([request.data for request in requests],
                                   names=[request.name for request in requests],
                                   options=[request.options for request in requests], pool=pool)


def reply_arrays(result: Result, panel: bool) -> dict[str, np.ndarray]:
    """A reply's output tensors for one image (batch axis of 1): the report JSON, the probabilities, the
    heatmap PNG and the panel PNG (empty unless asked for)."""
    rendered = render_outputs(result, panel)
    return {REPORT_OUTPUT: np.array([[report_json(rendered.report)]], dtype=object),
            PROBABILITIES_OUTPUT: result.probabilities.astype(np.float32)[None],
            HEATMAP_OUTPUT: np.array([[rendered.heatmap_png]], dtype=object),
            PANEL_OUTPUT: np.array([[rendered.panel_png or b""]], dtype=object)}

