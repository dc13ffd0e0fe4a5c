"""The export chain onnx -> verify -> check (-> trt): stages in order, each reported as it ends."""

from __future__ import annotations

import json
from pathlib import Path

from export.source import Source
from export.spec import ExportSpec
from export.stages.check import check_tensorrt
from export.stages.onnx import to_onnx
from export.stages.tensorrt import EngineSpec, build_engine
from export.stages.verify import verify
from runtime.backends.trt_support import ToolMissing
from runtime.manifest import Manifest


def export_all(source: Source, spec: ExportSpec, out_dir: Path, images: Path | None = None,
               engine: EngineSpec | None = None, log=print, concepts: dict | None = None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = to_onnx(source, spec, out_dir / "model.onnx", concepts=concepts)
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    manifest: Manifest = OnnxRuntimeBackend(onnx_path).manifest
    log(f"onnx    ok   {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")
    verified = verify(onnx_path, source, images)
    (out_dir / "verify.json").write_text(json.dumps(verified.as_dict(), indent=2))
    log(f"verify  {'ok  ' if verified.passed else 'FAIL'} {len(verified.figures) - 1} figures"
        + ("" if verified.passed else f": {'; '.join(verified.failures)}"))
    checked = check_tensorrt(onnx_path)
    (out_dir / "check.json").write_text(json.dumps(checked.as_dict(), indent=2))
    log(f"check   {'ok  ' if checked.passed else 'FAIL'} tensorrt"
        + ("" if checked.passed else f": {'; '.join(checked.problems)}"))
    summary = {"onnx": str(onnx_path), "verify": verified.passed, "check": checked.passed, "engine": None}
    try:
        engine_path = build_engine(onnx_path, manifest, engine or EngineSpec(), out_dir / "model.engine", log=log)
        summary["engine"] = str(engine_path)
        log(f"trt     ok   {engine_path}")
    except ToolMissing as missing:
        log(f"trt     skip {str(missing).split('.')[0]} (engines are built on the GPU machine)")
    return summary
