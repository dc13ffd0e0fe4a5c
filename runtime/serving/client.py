"""Talking to a served `melanomanet` with `tritonclient`, over HTTP or gRPC (from the URL's scheme):
`ServedModel` stands in for a `Predictor` in `mnet run --server` (same files, same summary), and `load_test`
is `mnet bench --server`."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from runtime.errors import ConfigError, ImageError, MnetError, ServingError
from runtime.manifest import find_class
from runtime.report.render import Rendered
from runtime.serving.protocol import HEATMAP_OUTPUT, IMAGE_INPUT, MODEL_NAME, PANEL_OUTPUT, REPORT_OUTPUT
from runtime.stages import Item

OUTPUTS = (REPORT_OUTPUT, HEATMAP_OUTPUT, PANEL_OUTPUT)
NETWORK_TIMEOUT_S = 300.0
RECEIVE_BLOCK_BYTES = 1 << 18


def connect(url: str):
    """A tritonclient for `url` (http://host:port, grpc://host:port; no scheme: HTTP) and its module."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "grpc") or not parsed.hostname or not parsed.port:
        raise ConfigError(f"--server {url!r}: give http://HOST:PORT (Triton's HTTP port, 8000 by default) or "
                          "grpc://HOST:PORT (8001)")
    try:
        if parsed.scheme == "http":
            import tritonclient.http as module

            client = module.InferenceServerClient(f"{parsed.hostname}:{parsed.port}",
                                                  connection_timeout=NETWORK_TIMEOUT_S,
                                                  network_timeout=NETWORK_TIMEOUT_S)
            _receive_in_large_blocks(client)
        else:
            import tritonclient.grpc as module

            client = module.InferenceServerClient(f"{parsed.hostname}:{parsed.port}")
    except ImportError:
        raise ConfigError("--server needs tritonclient: pip install 'tritonclient[http,grpc]' (the project's "
                          "`serve` extra)") from None
    return client, module


def _receive_in_large_blocks(client) -> None:
    """tritonclient's HTTP client reads a response 4 KB at a time (geventhttpclient's default) and has no option
    for it; a reply with its panel is about 700 KB, and 256 KB reads cut the client's CPU per request from 2.9 to
    1.1-1.6 ms here."""
    connection = getattr(client, "_client_stub", None)
    if hasattr(connection, "block_size"):
        connection.block_size = max(connection.block_size, RECEIVE_BLOCK_BYTES)


class ServedModel:
    """A running server's model, for `run_batch` (`mnet run --server`): `explain_file` sends a file's bytes (and
    the options) and receives the whole explained answer, the report, heatmap and panel. It stands apart from the
    local stages: the server ran all three; `stages` is how the batch drives it."""

    def __init__(self, url: str, cam_class: str | None = None, mm_per_px: float | None = None,
                 lesion_at: tuple[float, float] | None = None):
        self.url = url
        self.local = threading.local()
        config = self._config()
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.class_names = tuple(parameters.get("class_names", "").split(","))
        self.is_demo = parameters.get("demo_weights") == "true"
        self.model_info = {"file": parameters.get("bundle", "?").rsplit("/", 1)[-1],
                           "sha256": parameters.get("bundle_sha256", "?"), "server": url}
        self.parameters = {"panel": True, **({"class": cam_class} if cam_class else {}),
                           **({"mm_per_px": mm_per_px} if mm_per_px else {}),
                           **({"lesion_at": f"{lesion_at[0]:g},{lesion_at[1]:g}"} if lesion_at else {})}
        self.concepts = None
        self.stages = ServedStages(self)
        if cam_class:
            self.class_index(cam_class)

    def _client(self):
        if not hasattr(self.local, "client"):
            self.local.client, self.local.module = connect(self.url)
        return self.local.client, self.local.module

    def _config(self) -> dict:
        client, module = self._client()
        try:
            if not client.is_server_ready():
                raise ServingError(f"{self.url}: the server is up but not ready; wait for it to load the model")
            config = client.get_model_config(MODEL_NAME, **({"as_json": True} if module.__name__.endswith("grpc")
                                                            else {}))
        except MnetError:
            raise
        except Exception as error:
            raise ServingError(f"{self.url}: no Triton server with the {MODEL_NAME} model answers there "
                               f"({_message(error)}); start one with `mnet serve --model model.onnx`") from None
        return config.get("config", config)

    def class_index(self, name: str) -> int:
        return find_class(name, self.class_names, "the served model's")

    def explain_file(self, path: Path, name: str | None = None) -> Rendered:
        """The server's explained answer for one image file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageError(path, f"cannot be read ({error.strerror})", "Check the file.") from None
        return self.request(data, {**self.parameters, "name": name or path.name}, str(path))

    def request(self, data: bytes, parameters: dict, source: str) -> Rendered:
        client, module = self._client()
        image = module.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], dtype=object))
        try:
            reply = client.infer(MODEL_NAME, [image], outputs=[module.InferRequestedOutput(name) for name in OUTPUTS],
                                 parameters=parameters)
        except Exception as error:
            raise ServingError(f"{source}: the server answered: {_message(error)}") from None
        report, heatmap, panel = (reply.as_numpy(name).reshape(-1)[0] for name in OUTPUTS)
        return Rendered(json.loads(report), heatmap, panel or None)


class ServedStages:
    """The stages (runtime.stages) of an answer a server computes whole: the request goes out in `prepare`, where
    the driver overlaps work on its threads (so requests are in flight at once), and the answer comes back there;
    `run_network` and `explain` have nothing left to do, and say so rather than pretend."""

    def __init__(self, served: ServedModel):
        self.served = served

    def prepare(self, item: Item) -> Item:
        if item.result is None:
            try:
                item.result = self.served.explain_file(item.image, item.name)
            except MnetError as error:
                item.result = error.as_outcome()
        return item

    @staticmethod
    def run_network(items: list[Item]) -> None:
        """The server ran the network when `prepare` sent the request."""

    @staticmethod
    def explain(item: Item) -> Item:
        """The server's answer is already explained."""
        return item


def _message(error: Exception) -> str:
    return (error.message() if callable(getattr(error, "message", None)) else str(error)).strip() or \
        type(error).__name__


def load_test(url: str, images: list[bytes], concurrency: int, requests: int) -> dict:
    """`requests` explained predictions of `images` (in turn) from `concurrency` clients at once: latency
    percentiles, images per second, and every request's outcome counted (none lost, none twice)."""
    model = ServedModel(url)
    answered: list[str] = []
    failures: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        started = time.perf_counter()
        try:
            reply = model.request(images[index % len(images)], {"name": f"request-{index}"}, f"request {index}")
        except MnetError as error:
            with lock:
                failures.append(str(error))
            return
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            answered.append(reply.report["image"])

    model.request(images[0], {}, "warm-up")
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    values = np.asarray(latencies) if latencies else np.zeros(1)
    return {"concurrency": concurrency, "requests": requests, "answered": len(answered),
            "distinct_answers": len(set(answered)), "failed": len(failures), "failures": failures[:5],
            "images_per_s": len(answered) / elapsed, "latency_ms": {
                "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
                "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}}
