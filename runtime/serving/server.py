"""`mnet serve`: a real NVIDIA Triton server (the `tritonserver` that PyPI's nvidia-pytriton ships) serving a
bundle as the model `melanomanet`, from a standalone repository written for the run.

Triton's Python backend runs our model in a stub process that embeds CPython and needs numpy < 2 (with numpy 2
its tensors come back empty or wrong), so it runs in the serving environment: a virtual environment built from
`runtime/serving/requirements.txt` (`make install` builds `.venv-serve`). The stub links libpython; a Python
built outside the system (pyenv, conda) must be found through LD_LIBRARY_PATH, or the stub fails with
`'_thread.RLock' object has no attribute '_recursion_count'`: the launcher sets it from the environment's own
Python, and puts the environment's `python3` first on PATH, from which the stub's Python takes its prefix (it
ignores PYTHONPATH); the model adds the project's folder to its path itself (`sys_path`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError, ServingError, ToolMissing
from runtime.serving.repository import ServingOptions, write_repository

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A source checkout (`make install` builds .venv-serve there); an installed package has no project folder, so its
# default is a folder of the user's own.
FROM_CHECKOUT = (PROJECT_ROOT / "Makefile").is_file() and (PROJECT_ROOT / "pyproject.toml").is_file()
DEFAULT_ENV = PROJECT_ROOT / ".venv-serve" if FROM_CHECKOUT else Path.home() / ".local" / "share" / "mnet-serve"
ENV_VARIABLE = "MNET_SERVING_ENV"
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
STARTUP_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 30
PR_SET_PDEATHSIG = 1
MMAP_THRESHOLD_BYTES = 256 * 1024
HTTP_LIMIT_FLAG = "--http-max-input-size"
HTTP_ENVELOPE_BYTES = 2**20  # the request's JSON header and parameters around the image data


@dataclass(frozen=True)
class ServingEnvironment:
    root: Path
    site_packages: Path
    python_version: str  # "3.11"
    python_lib: Path  # the folder holding libpython of the environment's Python

    @property
    def tritonserver(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def triton_libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    @property
    def python_backend(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver" / "backends" / "python"

    @property
    def stub(self) -> Path:
        return (self.site_packages / "pytriton" / "tritonserver" / "python_backend_stubs" / self.python_version
                / "triton_python_backend_stub")


def setup_hint(root: Path, from_checkout: bool = FROM_CHECKOUT) -> str:
    """How to build the serving environment: `make install` in a source checkout; in an installed package, a
    virtual environment of the package's requirements (Triton is not a dependency of the package)."""
    build = f"`python3 -m venv {root} && {root}/bin/pip install -r {REQUIREMENTS}`"
    if from_checkout:
        return f"build it with `make install` (from the project root), or {build}; or point --serving-env / " \
               f"${ENV_VARIABLE} at one"
    return (f"build one with {build} (Triton and numpy < 2, apart from this installation); or point --serving-env / "
            f"${ENV_VARIABLE} at one. `mnet run --server` needs only the serve extra: pip install "
            "'melanomanet-edge[serve]'")


def serving_environment(root: Path | None = None) -> ServingEnvironment:
    """The serving environment at `root` (default: $MNET_SERVING_ENV, else .venv-serve in the project), checked."""
    root = Path(root or os.environ.get(ENV_VARIABLE) or DEFAULT_ENV)
    found = sorted((root / "lib").glob("python3.*/site-packages/pytriton"))
    if not found:
        raise ToolMissing(f"no serving environment with Triton at {root}: {setup_hint(root)}")
    site_packages = found[-1].parent
    version = site_packages.parent.name.removeprefix("python")
    home = next((line.split("=", 1)[1].strip() for line in (root / "pyvenv.cfg").read_text().splitlines()
                 if line.startswith("home")), None) if (root / "pyvenv.cfg").exists() else None
    python_lib = Path(home).parent / "lib" if home else root / "lib"
    environment = ServingEnvironment(root, site_packages, version, python_lib)
    if not environment.stub.exists():
        raise ToolMissing(f"Triton's Python backend has no stub for Python {version} (it ships 3.10-3.12); build "
                          f"{root} with one of those")
    if not any(python_lib.glob(f"libpython{version}*.so*")):
        raise ToolMissing(f"no libpython{version} in {python_lib}: Triton's Python stub needs the shared library of "
                          f"the Python that built {root} (a Python built with --enable-shared)")
    return environment


def backend_folder(environment: ServingEnvironment, work: Path) -> Path:
    """Triton's backends folder: the Python backend with the stub of the environment's Python."""
    python = work / "backends" / "python"
    python.mkdir(parents=True)
    for file in environment.python_backend.iterdir():
        if file.is_file():
            os.symlink(file, python / file.name)
    shutil.copy(environment.stub, python / "triton_python_backend_stub")
    return work / "backends"


def server_environment(environment: ServingEnvironment) -> dict[str, str]:
    """The stub's embedded Python finds its prefix from `python3` on PATH: the serving environment's first, so
    its site-packages (numpy < 2) are the ones imported; its libpython and Triton's libraries on
    LD_LIBRARY_PATH."""
    env = dict(os.environ)
    libraries = [str(environment.python_lib), str(environment.triton_libs)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH")
                                                           else []))
    env["PATH"] = os.pathsep.join([str(environment.root / "bin"), env.get("PATH", "")])
    # numpy 1.x's OpenBLAS keeps a worker thread spinning (sched_yield) after every threaded call, which took a
    # core from the model in each stub: 1.5x the latency at one client on 2 cores. Its matrices here are tiny.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    # glibc raises its mmap threshold to the largest block freed (up to 32 MB), so after one large request body
    # later ones come from the heap, which it keeps: tritonserver grew by 22 MB over 240 refused 3 MB requests. A
    # fixed threshold keeps it off, and large blocks go back to the system when freed.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD_BYTES))
    return env


@dataclass(frozen=True)
class Endpoints:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"


def triton_command(environment: ServingEnvironment, repository: Path, backends: Path, endpoints: Endpoints,
                   max_request_bytes: int | None = None) -> list:
    """Triton's command line; with `max_request_bytes`, Triton's own HTTP body limit where this Triton has one
    (`--http-max-input-size`, in releases after 2.51); the model refuses larger requests in any case."""
    limit = ([f"--http-max-input-size={max_request_bytes + HTTP_ENVELOPE_BYTES}"]
             if max_request_bytes and HTTP_LIMIT_FLAG in triton_help(environment) else [])
    return [str(environment.tritonserver), f"--model-repository={repository}", f"--backend-directory={backends}",
            f"--http-address={endpoints.host}", f"--http-port={endpoints.http_port}",
            f"--grpc-address={endpoints.host}", f"--grpc-port={endpoints.grpc_port}",
            f"--metrics-address={endpoints.host}", f"--metrics-port={endpoints.metrics_port}",
            "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--log-verbose=0", *limit]


def triton_help(environment: ServingEnvironment) -> str:
    """What `tritonserver --help` lists (its options differ between releases)."""
    done = subprocess.run([str(environment.tritonserver), "--help"], capture_output=True, text=True, timeout=60,
                          env=server_environment(environment))
    return done.stdout + done.stderr


def open_serving_audit(options: ServingOptions, environment: ServingEnvironment, start_new: bool = False) -> None:
    """Open (and start) the audit log before Triton starts, so an unwritable or broken log stops `mnet serve` at
    once; its start record carries the serving environment's SBOM sha256 (what the model instances run with)."""
    from runtime.audit import AuditLog, Identity
    from runtime.audit.sbom import sbom_sha256

    AuditLog(options.audit, Identity(options.operator, options.device_id, options.log_names,
                                     sbom_sha256([str(environment.site_packages)])), options.audit_max_bytes,
             start_new)


def serve(model: Path, endpoints: Endpoints, options: ServingOptions, environment_root: Path | None = None,
          announce=print, audit_new: bool = False) -> int:
    """Start Triton on `model` and block until it stops; SIGINT or SIGTERM lets in-flight requests finish, then
    it exits 0. Returns Triton's exit code."""
    environment = serving_environment(environment_root)
    ports = {endpoints.http_port, endpoints.grpc_port, endpoints.metrics_port}
    if len(ports) < 3:
        raise ConfigError("--http-port, --grpc-port and --metrics-port must differ")
    for port in sorted(ports):
        check_port_free(endpoints.host, port)
    options = ServingOptions(**{**options.__dict__, "sys_path": (str(PROJECT_ROOT),)})
    if options.audit:
        open_serving_audit(options, environment, audit_new)
    with tempfile.TemporaryDirectory(prefix="mnet-serve-") as folder:
        work = Path(folder)
        repository = write_repository(model, work / "repository", options, standalone=True, link=True)
        backends = backend_folder(environment, work)
        process = subprocess.Popen(triton_command(environment, repository, backends, endpoints,
                                                  options.max_request_bytes),
                                   env=server_environment(environment), stdin=subprocess.DEVNULL,
                                   preexec_fn=stop_with_parent)
        previous = {number: signal.signal(number, lambda *_: process.send_signal(signal.SIGTERM))
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            wait_ready(process, endpoints)
            announce(endpoints)
            return process.wait()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(EXIT_TIMEOUT_S + 5)
                except subprocess.TimeoutExpired:
                    process.kill()
            for number, handler in previous.items():
                signal.signal(number, handler)


def stop_with_parent() -> None:
    """In the child before exec: have Linux send it SIGTERM when `mnet serve` dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"port {port} on {host} is taken ({error.strerror}): stop what uses it or choose "
                              "another with --http-port/--grpc-port/--metrics-port") from None


def wait_ready(process: subprocess.Popen, endpoints: Endpoints, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Until Triton's standard readiness endpoint answers 200 (the model loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServingError(f"tritonserver exited with code {process.returncode} before it was ready (its log "
                               "above says why)")
        try:
            with urllib.request.urlopen(f"{endpoints.http}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise ServingError(f"tritonserver was not ready within {timeout:.0f} s")

