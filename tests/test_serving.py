"""Serving on NVIDIA Triton (issue 15): batched explained predictions, the request contract, model repositories
(parsed by Triton's own ModelConfig), and a real `tritonserver` (PyPI's nvidia-pytriton) started by `mnet serve`
on loopback ports and called with `tritonclient`: reports equal to in-process ones, bad requests answered with
clear errors, a killed client, 2,000 requests from 16 clients, and a graceful stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from runtime.errors import ConfigError, ImageError, ToolMissing
from runtime.predictor import ImageOptions, Predictor
from runtime.serving.protocol import answer, parse_request
from runtime.serving.repository import ServingOptions, write_repository
from runtime.serving.server import serving_environment

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.jpg"))
MNET = str(Path(sys.executable).with_name("mnet"))


def serving_available() -> bool:
    try:
        serving_environment()
        return True
    except ToolMissing:
        if os.environ.get("MNET_REQUIRE_SERVING"):
            raise
        return False


needs_server = pytest.mark.skipif(not serving_available(), reason="no serving environment (make install builds it)")


@pytest.fixture(scope="module")
def predictor(bundle) -> Predictor:
    return Predictor(bundle)


def test_a_batch_equals_one_at_a_time_and_keeps_errors_apart(predictor, bundle):
    """A dynamic-batch bundle runs the batch in one call; results equal `predict` (one MC mask for all)."""
    assert predictor.batched
    items = [path.read_bytes() for path in SAMPLE_FILES] + [b"", b"not an image", SAMPLE_FILES[0].read_bytes()]
    names = [path.name for path in SAMPLE_FILES] + ["empty", "junk", "again"]
    results = predictor.predict_batch(items, names=names)
    for path, result in zip(SAMPLE_FILES + [SAMPLE_FILES[0]], results[:5] + results[7:]):
        alone = predictor.predict(path)
        assert np.abs(result.probabilities - alone.probabilities).max() <= 1e-5
        assert result.uncertainty.predictive == pytest.approx(alone.uncertainty.predictive, abs=1e-5)
        assert np.abs(result.heatmap - alone.heatmap).max() <= 1e-5
        assert result.abcde == alone.abcde
    assert isinstance(results[5], ImageError) and "empty" in str(results[5])
    assert isinstance(results[6], ImageError) and "not a readable image" in str(results[6])


def test_a_fixed_batch_bundle_runs_one_at_a_time(tmp_path, checkpoint):
    from export.source import load_source
    from export.spec import ExportSpec
    from export.stages.onnx import to_onnx

    fixed = Predictor(to_onnx(load_source(checkpoint), ExportSpec(image_size=224), tmp_path / "fixed.onnx"))
    assert not fixed.batched
    results = fixed.predict_batch(SAMPLE_FILES[:2], options=[ImageOptions("MEL"), ImageOptions(mm_per_px=0.02)])
    assert results[0].class_names[results[0].cam_class] == "MEL"
    diameter = results[1].abcde["diameter"]
    assert diameter["feret_mm"] == pytest.approx(diameter["feret_px"] * 0.02, abs=1e-3)


def test_requests_are_checked_and_answered_apart(predictor):
    good = SAMPLE_FILES[0].read_bytes()
    replies = answer(predictor, [
        (np.array([[good]], dtype=object), {"name": "a.jpg", "class": "MEL"}),
        (np.array([[b"junk"]], dtype=object), {}),
        (np.array([[good]], dtype=object), {"class": "XYZ"}),
        (np.array([[good], [good]], dtype=object), {"panel": "true"}),
        (np.array([[good]], dtype=object), {"colour": "blue"}),
    ])
    assert json.loads(replies[0]["report"][0, 0])["gradcampp"]["class"] == "MEL"
    assert replies[0]["probabilities"].shape == (1, 9) and replies[0]["panel_png"][0, 0] == b""
    assert isinstance(replies[1], ImageError)
    assert isinstance(replies[2], ConfigError) and "unknown class 'XYZ'" in str(replies[2])
    assert replies[3]["report"].shape == (2, 1) and replies[3]["panel_png"][1, 0].startswith(b"\x89PNG")
    assert isinstance(replies[4], ConfigError) and "unknown request parameter 'colour'" in str(replies[4])


@pytest.mark.parametrize("parameters, message", [({"mm_per_px": "-1"}, "not a positive number"),
                                                 ({"mm_per_px": True}, "True is not a positive number"),
                                                 ({"lesion_at": "left"}, "is not X,Y"),
                                                 ({"panel": "maybe"}, "is not true or false")])
def test_bad_parameters_say_what_is_wrong(parameters, message):
    with pytest.raises(ConfigError, match=message):
        parse_request(parameters, ("MEL", "NV"))


@pytest.mark.parametrize("standalone", [True, False])
def test_repositories_parse_as_triton_model_configs(bundle, tmp_path, standalone):
    repository = write_repository(bundle, tmp_path / "repo", ServingOptions(max_batch=4, instances=2), standalone)
    configs = {path.parent.name: text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
               for path in repository.glob("*/config.pbtxt")}
    python = configs["melanomanet"]
    assert python.backend == "python" and python.max_batch_size == 4
    assert python.dynamic_batching.max_queue_delay_microseconds == 2000
    assert python.instance_group[0].count == 2
    assert [o.name for o in python.output] == ["report", "probabilities", "heatmap_png", "panel_png"]
    assert (repository / "melanomanet" / "1" / "model.py").exists() and (repository / "README.md").exists()
    if standalone:
        assert set(configs) == {"melanomanet"} and python.parameters["mode"].string_value == "standalone"
        return
    onnx = configs["melanomanet_onnx"]
    assert onnx.platform == "onnxruntime_onnx" and onnx.max_batch_size == 0  # mc_mask has no batch axis
    dims = {tensor.name: list(tensor.dims) for tensor in onnx.input}
    assert dims["image"] == [-1, 3, 224, 224] and dims["mc_mask"][0] == Predictor(bundle).mc_samples
    accelerator = onnx.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_profile_max_shapes"].startswith("image:4x3x224x224")
    assert onnx.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert python.parameters["mode"].string_value == "bls"


def test_a_missing_serving_environment_is_named(tmp_path, bundle):
    done = subprocess.run([MNET, "serve", "--model", str(bundle), "--serving-env", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no serving environment with Triton" in done.stderr
    assert "make install" in done.stderr


def test_run_with_a_server_refuses_local_options_and_names_an_absent_server(tmp_path):
    local = subprocess.run([MNET, "run", str(SAMPLES), "--server", "http://127.0.0.1:9", "--mc-samples", "5", "-o",
                            str(tmp_path / "a")], capture_output=True, text=True, timeout=60)
    assert local.returncode == 2 and "--mc-samples: set on the server" in local.stderr
    absent = subprocess.run([MNET, "run", str(SAMPLES), "--server", f"http://127.0.0.1:{free_ports(1)[0]}", "-o",
                             str(tmp_path / "b")], capture_output=True, text=True, timeout=60)
    assert absent.returncode == 1 and "no Triton server with the melanomanet model answers there" in absent.stderr
    assert "mnet serve --model" in absent.stderr


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


class Server:
    """`mnet serve` in a process group of its own (tritonserver and its stubs with it), its temporary repository
    under the test's folder; `close` ends the whole group whatever state it is in."""

    def __init__(self, bundle: Path, log: Path, *extra: str):
        self.bundle = bundle
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [MNET, "serve", "--model", str(bundle), "--http-port", str(self.http_port), "--grpc-port",
             str(self.grpc_port), "--metrics-port", str(self.metrics_port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "TMPDIR": str(log.parent)})
        deadline = time.monotonic() + 180
        try:
            while not self.ready():
                assert self.process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the server was not ready in 3 minutes"
                time.sleep(0.5)
        except BaseException:
            self.close()
            raise

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def memory_mb(self) -> float:
        """Proportional set size (PSS) of the server's process tree (tritonserver and the Python stubs): the shared
        memory between them (the stubs' request and response buffers) counted once, not once per process."""
        pids, frontier = set(), [self.process.pid]
        while frontier:
            pid = frontier.pop()
            pids.add(pid)
            for child in Path(f"/proc/{pid}/task").glob("*/children"):
                frontier += [int(p) for p in child.read_text().split()]
        total = 0
        for pid in pids:
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:  # ended meanwhile
                continue
            total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        return total / 1024

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            self.close()

    def close(self) -> None:
        kill_group(self.process)
        self.log.close()


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM (in-flight requests finish), then whatever is left of the group killed."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """Kill what is left of a process group started with start_new_session (nothing after a clean stop), then
    reap its leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)


@pytest.fixture
def started(tmp_path):
    """Servers a test starts itself, closed at its end however it ends."""
    servers = []

    def start(bundle: Path, *extra: str) -> Server:
        servers.append(Server(bundle, tmp_path / f"server{len(servers)}.log", *extra))
        return servers[-1]
    yield start
    for running in servers:
        running.close()


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    if not serving_available():
        pytest.skip("no serving environment (make install builds it)")
    running = Server(bundle, tmp_path_factory.mktemp("server") / "server.log")
    yield running
    running.close()


def client(server: Server):
    import tritonclient.http as http

    return http.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=300)


def ask(server: Server, data, dtype: str = "BYTES", parameters: dict | None = None):
    import tritonclient.http as http

    image = http.InferInput("image", [1, 1], dtype)
    image.set_data_from_numpy(np.array([[data]], dtype=object if dtype == "BYTES" else np.float32))
    return client(server).infer("melanomanet", [image], parameters=parameters or {})


@needs_server
def test_standard_endpoints_answer(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/melanomanet/ready"):
        with urllib.request.urlopen(server.http + path, timeout=5) as response:
            assert response.status == 200
    ask(server, SAMPLE_FILES[0].read_bytes())
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'nv_inference_request_success{model="melanomanet"' in metrics


@needs_server
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_reports_equal_in_process_ones(server, bundle, tmp_path, scheme):
    port = server.http_port if scheme == "http" else server.grpc_port
    served, local = tmp_path / "served", tmp_path / "local"
    done = subprocess.run([MNET, "run", str(SAMPLES), "--server", f"{scheme}://127.0.0.1:{port}", "-o", str(served),
                           "--concurrency", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    subprocess.run([MNET, "run", str(SAMPLES), "--model", str(bundle), "-o", str(local)], check=True,
                   capture_output=True, timeout=300)
    for path in SAMPLE_FILES:
        ours, theirs = (json.loads((folder / f"{path.stem}.json").read_text()) for folder in (local, served))
        for report in (ours, theirs):
            report.pop("timings_ms")
        probabilities = [np.array(list(r["prediction"]["probabilities"].values())) for r in (ours, theirs)]
        assert np.abs(probabilities[0] - probabilities[1]).max() <= 1e-5
        assert ours["prediction"]["label"] == theirs["prediction"]["label"]
        assert ours["uncertainty"]["flagged"] == theirs["uncertainty"]["flagged"]
        assert ours["abcde"]["status"] == theirs["abcde"]["status"]
        assert ours["abcde"]["segmentation"]["flags"] == theirs["abcde"]["segmentation"]["flags"]
        assert ours["input"] == theirs["input"] and ours["model"] == theirs["model"]
        for key in ("uncertainty", "referral", "abcde", "gradcampp", "concepts"):
            assert_same_tree(ours[key], theirs[key], key)
        for suffix in (".png", ".gradcampp.png"):
            assert cv2.imread(str(served / f"{path.stem}{suffix}")) is not None
        heatmaps = [cv2.imread(str(folder / f"{path.stem}.gradcampp.png"), cv2.IMREAD_UNCHANGED)
                    for folder in (local, served)]
        assert np.abs(heatmaps[0].astype(int) - heatmaps[1].astype(int)).max() <= 1
    rows = [line.split(",")[:6] for line in (served / "summary.csv").read_text().splitlines()]
    assert rows == [line.split(",")[:6] for line in (local / "summary.csv").read_text().splitlines()]


@needs_server
def test_a_json_client_like_curl_gets_the_report(server):
    """Triton's HTTP/JSON protocol carries text only: the image goes as base64, the report comes back as JSON."""
    import base64

    body = {"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                        "data": [base64.b64encode(SAMPLE_FILES[4].read_bytes()).decode()]}],
            "parameters": {"name": SAMPLE_FILES[4].name}, "outputs": [{"name": "report"}]}
    request = urllib.request.Request(f"{server.http}/v2/models/melanomanet/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        outputs = json.loads(response.read())["outputs"]
    report = json.loads(outputs[0]["data"][0])
    assert report["image"] == SAMPLE_FILES[4].name and report["schema"] == "mnet.report/1"
    assert report["prediction"]["label"] == Predictor(Path(server.bundle)).predict(SAMPLE_FILES[4]).label


def assert_same_tree(ours, theirs, where: str, tolerance: float = 1e-4) -> None:
    """Equal JSON trees, numbers within `tolerance` (relative, and absolute near 0): the server runs the same
    pipeline in its own environment (numpy 1.26, OpenCV 4.11)."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for key in ours:
            assert_same_tree(ours[key], theirs[key], f"{where}.{key}", tolerance)
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), where
        for index, (first, second) in enumerate(zip(ours, theirs)):
            assert_same_tree(first, second, f"{where}[{index}]", tolerance)
    elif isinstance(ours, float) and not isinstance(theirs, bool):
        assert theirs == pytest.approx(ours, rel=tolerance, abs=tolerance), where
    else:
        assert ours == theirs, where


def truncated_jpeg() -> bytes:
    return SAMPLE_FILES[0].read_bytes()[:4000]


def huge_jpeg() -> bytes:
    image = np.full((9000, 12000, 3), 200, np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()


@needs_server
@pytest.mark.parametrize("case, message", [
    ("empty", "is empty (0 bytes)"),
    ("text", "not a readable image"),
    ("truncated", "not a readable image"),
    ("huge", "more than"),
    ("missing input", "missing required input(s) ['image']"),
    ("wrong dtype", "data-type is 'FP32', but model 'melanomanet' expects 'BYTES'"),
    ("unknown class", "unknown class 'XYZ'"),
])
def test_bad_requests_get_clear_errors_and_the_server_goes_on(server, case, message):
    from tritonclient.utils import InferenceServerException

    good = SAMPLE_FILES[1].read_bytes()
    with pytest.raises(InferenceServerException) as raised:
        if case == "missing input":
            client(server).infer("melanomanet", [])
        elif case == "wrong dtype":
            ask(server, 0.0, "FP32")
        elif case == "unknown class":
            ask(server, good, parameters={"class": "XYZ"})
        else:
            ask(server, {"empty": b"", "text": b"hello", "truncated": truncated_jpeg(), "huge": huge_jpeg()}[case])
    assert message in raised.value.message()
    assert raised.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert ask(server, good).as_numpy("probabilities").shape == (1, 9)


@needs_server
def test_a_client_killed_mid_request_does_not_disturb_the_server(server):
    script = ("import sys, numpy as np, tritonclient.http as h;"
              "c = h.InferenceServerClient(sys.argv[1]); i = h.InferInput('image', [1, 1], 'BYTES');"
              "i.set_data_from_numpy(np.array([[open(sys.argv[2], 'rb').read()]], dtype=object));"
              "print('sending', flush=True); c.infer('melanomanet', [i])")
    for _ in range(3):
        doomed = subprocess.Popen([sys.executable, "-c", script, f"127.0.0.1:{server.http_port}",
                                   str(SAMPLE_FILES[2])], stdout=subprocess.PIPE, text=True)
        assert doomed.stdout.readline().strip() == "sending"
        time.sleep(0.05)
        doomed.kill()
        doomed.wait()
    assert ask(server, SAMPLE_FILES[2].read_bytes()).as_numpy("probabilities").shape == (1, 9)
    assert server.ready()


LEAK_BOUND_KB_PER_REQUEST = 8


@needs_server
def test_two_thousand_requests_from_sixteen_clients(server):
    """None lost or answered twice, and no request's buffers kept. After 500 warm-up requests (ONNX Runtime's
    arenas and the allocators grown to the largest batches), 2,000 more may grow the server's memory by at most
    8 KB a request (16 MB): keeping any buffer of a request (its image, 170-310 KB here; the decoded image, over
    1 MB; its heatmap PNG or report) would grow it by 340 MB or more. Allocator growth is irregular (CI saw 1 to
    6 MB in rounds of 500, glibc's arenas filling; 3.5 KB a request over 3,000 after 1,000 on 2026-12-08): a
    bound per request separates it from a leak, a bound per round does not. (4,000 requests took 4 of the
    suite's 18 minutes.)"""
    from runtime.serving.client import load_test

    images = [path.read_bytes() for path in SAMPLE_FILES]
    load_test(server.http, images, 16, 500)
    warm = server.memory_mb()
    figures = load_test(server.http, images, 16, 2000)
    growth = server.memory_mb() - warm
    print(f"2000 requests, 16 clients: {figures['images_per_s']:.1f} images/s, p99 "
          f"{figures['latency_ms']['p99']:.0f} ms; server PSS {warm:.0f} MB after 500 warm-up requests, "
          f"{growth:+.1f} MB over the 2,000 ({growth * 1024 / 2000:.1f} KB a request)")
    assert figures["answered"] == 2000 and figures["distinct_answers"] == 2000 and figures["failed"] == 0
    assert growth * 1024 / 2000 < LEAK_BOUND_KB_PER_REQUEST, f"server memory grew {growth:.1f} MB over 2,000 requests"


@needs_server
def test_oversized_and_malformed_requests_are_refused_and_leave_no_memory_behind(bundle, started):
    """`--max-request-mb 2`: 40 requests of 3 MB are refused before decoding with the limit named, 40 malformed
    ones (text, a truncated JPEG, a float tensor, an unknown parameter) are refused too, from 8 clients at once, and
    a good request is still answered. Triton copies every request into its Python stub's shared memory, which
    grows to hold what is in flight at once and is kept for reuse: so the server's memory (tritonserver, the
    stubs and their shared memory) may grow by the 8 requests in flight (24 MB) and 16 MB besides, from where it
    was after one request of each kind. Before the refused requests gave their buffers back it grew by 120 MB on
    the first 80 and kept growing."""
    from tritonclient.utils import InferenceServerException

    server = started(bundle, "--max-request-mb", "2")
    oversized = b"\xff\xd8\xff" + os.urandom(3 * 2**20)
    malformed = [(b"hello", "BYTES", None), (truncated_jpeg(), "BYTES", None), (0.0, "FP32", None),
                 (SAMPLE_FILES[0].read_bytes(), "BYTES", {"colour": "blue"})]
    cases = [(oversized, "BYTES", None)] * 40 + malformed * 10

    def refused(case) -> str:
        data, dtype, parameters = case
        with pytest.raises(InferenceServerException) as raised:
            ask(server, data, dtype, parameters)
        return raised.value.message()

    assert "over this server's limit of 2 MB" in refused(cases[0])
    for case in malformed:
        refused(case)
    before = server.memory_mb()
    with ThreadPoolExecutor(8) as pool:
        messages = list(pool.map(refused, cases))
    growth = server.memory_mb() - before
    print(f"80 refused requests (40 of 3 MB): server PSS {before:.0f} MB before, {growth:+.1f} MB after")
    assert sum("--max-request-mb" in message for message in messages) == 40
    assert growth < 8 * 3 + 16, f"80 refused requests left {growth:.1f} MB behind"
    assert ask(server, SAMPLE_FILES[1].read_bytes()).as_numpy("probabilities").shape == (1, 9)


def test_a_request_over_the_limit_is_refused_before_decoding(predictor):
    good = SAMPLE_FILES[0].read_bytes()
    replies = answer(predictor, [(np.array([[b"\xff\xd8" + bytes(len(good))]], dtype=object), {}),
                                 (np.array([[good]], dtype=object), {})], max_request_bytes=len(good))
    assert isinstance(replies[0], ImageError) and "over this server's limit" in str(replies[0])
    assert "--max-request-mb" in str(replies[0]) and replies[1]["probabilities"].shape == (1, 9)


@needs_server
def test_triton_enforces_the_limit_itself_where_it_can(monkeypatch, tmp_path):
    """Triton 2.51 (nvidia-pytriton 0.7) has no HTTP body limit, later releases have --http-max-input-size."""
    from runtime.serving import server as launcher

    environment = launcher.serving_environment()
    shipped = launcher.triton_command(environment, tmp_path, tmp_path, launcher.Endpoints(), 2**20)
    assert (launcher.HTTP_LIMIT_FLAG in launcher.triton_help(environment)) == any(
        argument.startswith(launcher.HTTP_LIMIT_FLAG) for argument in shipped)
    monkeypatch.setattr(launcher, "triton_help", lambda _: "  --http-max-input-size <integer>")
    command = launcher.triton_command(environment, tmp_path, tmp_path, launcher.Endpoints(), 2**20)
    assert f"--http-max-input-size={2**20 + launcher.HTTP_ENVELOPE_BYTES}" in command


@needs_server
def test_sigterm_lets_in_flight_requests_finish_then_exits_zero(bundle, started):
    server = started(bundle, "--max-queue-delay-us", "0")
    data = SAMPLE_FILES[3].read_bytes()
    with ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(ask, server, data) for _ in range(4)]
        time.sleep(0.3)
        code = server.stop()
        replies = [future.result() for future in pending]
    assert code == 0
    assert all(reply.as_numpy("probabilities").shape == (1, 9) for reply in replies)


@needs_server
def test_the_bls_repository_runs_on_the_real_server(bundle, tmp_path):
    """The production pair with `melanomanet_onnx` played by a Python model running the graph on ONNX Runtime
    (the wheel's Triton has no ONNX Runtime backend): the BLS path from request to report."""
    from runtime.serving.server import Endpoints, backend_folder, server_environment, triton_command, wait_ready

    repository = write_repository(bundle, tmp_path / "repo", ServingOptions(sys_path=(str(ROOT),)), standalone=False)
    stand_in = repository / "melanomanet_onnx"
    config = (stand_in / "config.pbtxt").read_text()
    config = config.replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    config = config[:config.index("instance_group")] + "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
    (stand_in / "config.pbtxt").write_text(config)
    (stand_in / "1" / "model.py").write_text(STAND_IN)
    environment = serving_environment()
    endpoints = Endpoints("127.0.0.1", *free_ports(3))
    process = subprocess.Popen(triton_command(environment, repository, backend_folder(environment, tmp_path),
                                              endpoints) + ["--disable-auto-complete-config"],
                               env=server_environment(environment), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(process, endpoints)
        from runtime.serving.client import ServedModel

        served = ServedModel(endpoints.http).request(SAMPLE_FILES[0].read_bytes(), {"name": "a.jpg"}, "a.jpg")
        local = Predictor(bundle).predict(SAMPLE_FILES[0])
        got = np.array(list(served.report["prediction"]["probabilities"].values()))
        assert np.abs(got - local.probabilities).max() <= 1e-5
        assert served.report["model"]["backend"] == "triton-bls"
    finally:
        stop_group(process)


STAND_IN = '''
import json
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.session = onnxruntime.InferenceSession(args["model_repository"] + "/1/model.onnx")
        self.outputs = [output["name"] for output in json.loads(args["model_config"])["output"]]

    def execute(self, requests):
        replies = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in ("image", "mc_mask")}
            values = self.session.run(self.outputs, feed)
            replies.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values)]))
        return replies
'''


@needs_server
def test_the_stubs_run_openblas_on_one_thread_unless_told(monkeypatch):
    from runtime.serving.server import server_environment, serving_environment

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert server_environment(serving_environment())["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert server_environment(serving_environment())["OPENBLAS_NUM_THREADS"] == "4"


def test_the_http_client_reads_replies_in_large_blocks():
    """tritonclient has no option for it: the client reaches into its connection, so a tritonclient that moves
    that attribute must fail here rather than silently read 700 KB replies 4 KB at a time again."""
    from runtime.serving.client import RECEIVE_BLOCK_BYTES, connect

    client, _ = connect("http://127.0.0.1:9")
    assert client._client_stub.block_size == RECEIVE_BLOCK_BYTES


@needs_server
def test_the_readme_serving_commands_run_as_printed(server, tmp_path):
    """Every line of the README's serving block but `mnet serve` itself (running here on other ports), the curl
    request included: a 270 KB image goes in a file (-d @request.json), not on curl's command line."""
    from tests.test_readme import as_printed_here, block_after

    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    lines = [line for line in block_after("## Serving").splitlines() if not line.startswith("mnet serve")]
    assert any(line.startswith("curl") for line in lines)
    for line in lines:
        command = as_printed_here(line, server.bundle).replace(":8000", f":{server.http_port}")
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=environment, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        if line.startswith("curl"):
            report = json.loads(json.loads(done.stdout)["outputs"][0]["data"][0])
            assert report["schema"] == "mnet.report/1" and report["prediction"]["label"] in report["prediction"][
                "probabilities"]
    assert (tmp_path / "served" / "summary.csv").exists() and (tmp_path / "repo" / "melanomanet").is_dir()


@needs_server
def test_every_instance_of_a_served_model_appends_to_one_audit_chain(bundle, started, tmp_path):
    """Two model instances (processes) answer 12 requests at once; the log holds one record per answer, the
    report's sha256 is that of the JSON the client got, and the chain verifies."""
    import hashlib

    from runtime.audit import verify
    from runtime.audit.sbom import sbom_sha256

    log = tmp_path / "served.jsonl"
    server = started(bundle, "--instances", "2", "--audit", str(log), "--operator", "op9", "--device-id", "rack-1")
    data = SAMPLE_FILES[1].read_bytes()
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: ask(server, data), range(12)))
    assert server.stop() == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    predictions = [row for row in rows if row["kind"] == "prediction"]
    assert len(predictions) == 12 and verify([log]) == []
    assert rows[0]["operator"] == "op9" and rows[0]["sbom_sha256"] == sbom_sha256(
        [str(serving_environment().site_packages)])
    sent = {hashlib.sha256(reply.as_numpy("report")[0, 0]).hexdigest() for reply in replies}
    assert {row["report_sha256"] for row in predictions} == sent
    assert {row["input_sha256"] for row in predictions} == {hashlib.sha256(data).hexdigest()}
