"""What a Jetson or a clinic workstation installs: the wheel without extras (plus `serve`), its dependencies at
the locked versions of requirements/runtime.txt, no PyTorch, timm or torchvision. `mnet run`, `abcde`, `bench`,
`doctor` and `serve` work there; the training commands name the extra they need."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(command: list[str], timeout: int = 600, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the built wheel and the runtime lock, nothing else."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
          str(work / "dist"), str(source)])
    venv = work / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    _run([*pip, "--require-hashes", "-r", str(ROOT / "requirements" / "runtime.txt")])
    _run([*pip, *map(str, (work / "dist").glob("*.whl"))])
    return venv


def mnet(venv: Path, *arguments: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "mnet"), *arguments], capture_output=True, text=True, timeout=600,
                          **options)


def test_the_runtime_install_has_no_pytorch(runtime_venv):
    python = str(runtime_venv / "bin" / "python")
    for module in ("torch", "torchvision", "timm", "onnx"):
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "No module named" in done.stderr, module


def test_the_runtime_commands_work_without_pytorch(runtime_venv, bundle, tmp_path):
    doctor = mnet(runtime_venv, "doctor")
    assert doctor.returncode == 0 and "ort-cpu" in doctor.stdout, doctor.stdout + doctor.stderr
    run = mnet(runtime_venv, "run", str(SAMPLES), "--model", str(bundle), "-o", str(tmp_path / "out"),
               "--mc-samples", "4")
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("ISIC_*.json"))) == 5
    abcde = mnet(runtime_venv, "abcde", str(SAMPLES / "ISIC_0034335.jpg"), "--json", "-")
    assert abcde.returncode == 0 and '"status"' in abcde.stdout, abcde.stderr[-2000:]
    bench = mnet(runtime_venv, "bench", "--model", str(bundle), "--mc-samples", "2", "--repeats", "2",
                 "--batch", "2", "--json", str(tmp_path / "bench.json"))
    assert bench.returncode == 0, bench.stderr[-3000:]


@pytest.mark.parametrize("command", [["train", "--data", "d", "--out", "o"],
                                     ["calibrate", "--data", "d", "--checkpoint", "c.safetensors", "-o", "c.json"]])
def test_training_commands_name_their_extra(runtime_venv, command, tmp_path):
    done = mnet(runtime_venv, *command, cwd=tmp_path)
    assert done.returncode == 2 and "pip install 'melanomanet-edge[train]'" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    exported = subprocess.run([str(runtime_venv / "bin" / "mnet-export"), "onnx", "c.safetensors"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 2 and "[train,export]" in exported.stderr


def test_checking_an_onnx_file_asks_only_for_the_export_extra(runtime_venv, bundle, tmp_path):
    done = subprocess.run([str(runtime_venv / "bin" / "mnet-export"), "check", str(bundle)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'melanomanet-edge[export]'" in done.stderr, done.stderr[-2000:]


def test_doctor_advises_what_fits_an_installed_package(runtime_venv, tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "MNET_SERVING_ENV"}
    done = mnet(runtime_venv, "doctor", cwd=tmp_path, env={**environment, "HOME": str(tmp_path), "COLUMNS": "4000"})
    said = " ".join((done.stdout + done.stderr).split())
    assert "make install" not in said and "site-packages/.venv-serve" not in said, said
    assert "melanomanet-edge[serve]" in said and str(tmp_path / ".local" / "share" / "mnet-serve") in said


def test_serving_runs_from_the_installed_package(runtime_venv, bundle, tmp_path):
    """`mnet serve` finds the serving environment from $MNET_SERVING_ENV (make install builds .venv-serve), and
    the installed package, not a checkout, is what the Triton model imports."""
    from tests.test_serving import free_ports, serving_available, stop_group

    if not serving_available():
        pytest.skip("no serving environment (make install builds it)")
    http, grpc, metrics = free_ports(3)
    environment = {**os.environ, "MNET_SERVING_ENV": str(ROOT / ".venv-serve"), "TMPDIR": str(tmp_path)}
    server = subprocess.Popen([str(runtime_venv / "bin" / "mnet"), "serve", "--model", str(bundle), "--http-port",
                               str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                              cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the server was not ready in 3 minutes"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        served = mnet(runtime_venv, "run", str(SAMPLES / "ISIC_0034335.jpg"), "--server",
                      f"http://127.0.0.1:{http}", "-o", str(tmp_path / "served"))
        assert served.returncode == 0, served.stderr[-3000:]
        assert (tmp_path / "served" / "ISIC_0034335.json").exists()
    finally:
        stop_group(server)
