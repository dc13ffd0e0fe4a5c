"""`mnet-export`: checkpoint -> ONNX bundle -> verification -> TensorRT check -> engine."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from runtime.app.console import console, fail, guarded, progress_bar
from runtime.errors import ConfigError, MnetError
from runtime.serving import GPU_QUEUE_DELAY_US

app = typer.Typer(help="Export MelanomaNet checkpoints to ONNX bundles and TensorRT engines, verified against PyTorch.",
                  rich_markup_mode=None,
                  no_args_is_help=True, add_completion=False)

class Target(str, Enum):
    tensorrt = "tensorrt"


class Precision(str, Enum):
    fp16 = "fp16"
    int8 = "int8"
    bf16 = "bf16"


class QuantizeTarget(str, Enum):
    ort = "ort"
    openvino = "openvino"
    tensorrt = "tensorrt"


class Method(str, Enum):
    auto = "auto"
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


CheckpointArg = Annotated[Optional[Path], typer.Argument(help="A .safetensors checkpoint from `mnet train`.")]
SeedOpt = Annotated[Optional[Path], typer.Option("--from-seed", help="A .pth released by the MelanomaNet "
                                                 "reference code (its trainer's dict or a bare state_dict; "
                                                 "read without running code).")]
ArchOpt = Annotated[Optional[str], typer.Option(help="Architecture of --from-seed: efficientnet_v2_s, _m or _l "
                                              "(default: read off the weights).")]
SizeOpt = Annotated[Optional[int], typer.Option(min=32, help="Input size in pixels (default: the checkpoint's).")]
LayerOpt = Annotated[str, typer.Option(help="GradCAM++ target: 'last' (closed-form gradient, free) or a module "
                                       "name such as backbone.blocks.4 (backward pass in the graph).")]
DynamicBatchOpt = Annotated[bool, typer.Option(help="Dynamic batch axis (last-layer export only).")]
CavsOpt = Annotated[Optional[Path], typer.Option(help="FastCAV vectors (from `mnet concepts train`) to carry.")]
CalibrationOpt = Annotated[Optional[Path], typer.Option(help="A `mnet calibrate` file: its temperature and referral "
                                                        "rule go into the manifest.")]


def _source(checkpoint, seed, arch, image_size, calibration=None):
    from export.source import load_source, with_calibration

    source = guarded(lambda: load_source(checkpoint, seed, arch, image_size))
    return guarded(lambda: with_calibration(source, calibration)) if calibration else source


def _spec(source, image_size, cam_layer, dynamic_batch, opset):
    from export.spec import ExportSpec

    return ExportSpec(image_size=image_size or source.manifest.preprocessing.image_size, cam_layer=cam_layer,
                      dynamic_batch=dynamic_batch, opset=opset, mc_samples=source.manifest.mc_samples)


def _concepts(cavs: Optional[Path], source, image_size: int):
    if cavs is None:
        return None
    from export.concepts import bundle_concepts

    try:
        return bundle_concepts(cavs, source, image_size)
    except MnetError as error:
        fail(error)


@app.command()
def onnx(
    checkpoint: CheckpointArg = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="The .onnx file to write.")] = Path("model.onnx"),
    image_size: SizeOpt = None,
    cam_layer: LayerOpt = "last",
    dynamic_batch: DynamicBatchOpt = False,
    opset: Annotated[int, typer.Option(min=18, max=20, help="ONNX opset (TensorRT 10 parses up to 20).")] = 20,
    from_seed: SeedOpt = None,
    arch: ArchOpt = None,
    cavs: CavsOpt = None,
    calibration: CalibrationOpt = None,
):
    """Export one self-contained .onnx bundle: logits, mc_logits, cam_activations, cam_gradients, embedding."""
    from export.stages.onnx import to_onnx

    source = _source(checkpoint, from_seed, arch, image_size, calibration)
    spec = _spec(source, image_size, cam_layer, dynamic_batch, opset)
    with console.status(f"exporting {source.manifest.architecture} at {spec.image_size}px"):
        try:
            path = to_onnx(source, spec, out, concepts=_concepts(cavs, source, spec.image_size))
        except MnetError as error:
            fail(error)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.name}.json")


@app.command("verify")
def verify_command(
    model: Annotated[Path, typer.Argument(help="The exported .onnx file.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="The checkpoint it was exported from.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="A folder of real images to verify on, too.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every figure to this file.")] = None,
    from_seed: SeedOpt = None,
    arch: ArchOpt = None,
):
    """Compare ONNX Runtime with PyTorch: logits, MC logits, activations, gradients, GradCAM++ maps."""
    from export.stages.verify import verify
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    try:
        size = OnnxRuntimeBackend(model).manifest.preprocessing.image_size
        report = verify(model, _source(checkpoint, from_seed, arch, size), images)
    except MnetError as error:
        fail(error)
    for name, figure in report.figures.items():
        if isinstance(figure, dict):
            console.print(f"  {name:<48} {figure['value']:.3g}  (limit {figure['limit']:g})")
    if json_out:
        json_out.write_text(json.dumps(report.as_dict(), indent=2))
    if not report.passed:
        fail(MnetError("outside tolerance: " + "; ".join(report.failures)))
    console.print("[green]verified[/green]: ONNX Runtime matches PyTorch within the declared tolerances")


@app.command()
def check(
    model: Annotated[Path, typer.Argument(help="The .onnx file to check.")],
    target: Annotated[Target, typer.Option(help="Deployment target: tensorrt (TensorRT 10 ONNX parser).")] = "tensorrt",
):
    """List the ops and attributes the target's ONNX parser does not support (runs on CPU)."""
    from export.stages.check import check_tensorrt

    report = guarded(lambda: check_tensorrt(model))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for problem in report.problems:
        console.print(f"[red]unsupported:[/red] {escape(problem)}", soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {sum(report.op_counts.values())} nodes, all parseable by TensorRT 10")


@app.command()
def trt(
    model: Annotated[Path, typer.Argument(help="The exported .onnx file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The engine file to write.")] = Path("model.engine"),
    fp16: Annotated[bool, typer.Option(help="Allow FP16 kernels (from an FP32 or FP16 bundle).")] = False,
    int8: Annotated[bool, typer.Option(help="INT8 from a QDQ bundle (`mnet-export quantize --precision int8 "
                                       "--target tensorrt`): explicit quantization with its scales.")] = False,
    workspace: Annotated[float, typer.Option(min=0.1, help="Builder workspace in GB.")] = 2.0,
    batch: Annotated[str, typer.Option(help="Batch profile MIN:OPT:MAX.")] = "1:1:1",
    mc_samples: Annotated[str, typer.Option(help="MC-sample profile MIN:OPT:MAX.")] = "1:30:128",
):
    """Build a plain TensorRT engine (trtexec can load it) and its JSON sidecar. Exit 2 without TensorRT/GPU."""
    from export.stages.tensorrt import EngineSpec, build_engine, parse_range
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    try:
        spec = EngineSpec(fp16=fp16, int8=int8, workspace_gb=workspace, batch=parse_range(batch),
                          mc_samples=parse_range(mc_samples))
        manifest = OnnxRuntimeBackend(model).manifest
        path = build_engine(model, manifest, spec, out, log=console.print)
    except MnetError as error:
        fail(error)
    console.print(f"wrote {path} and {path.name}.json")


@app.command()
def quantize(
    bundle: Annotated[Path, typer.Argument(help="The FP32 .onnx bundle (with its sidecar).")],
    precision: Annotated[Precision, typer.Option(help="int8: static QDQ, calibrated; fp16: for GPUs and Jetsons; "
                                                 "bf16: a run-time choice (OpenVINO's hint on the FP32 bundle): "
                                                 "only its fidelity is measured and written.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="The .onnx bundle to write (bf16: the "
                                                "fidelity report, default BUNDLE.bf16.fidelity.json).")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Real images to calibrate INT8 on: a data folder the bundle "
                                                  "was trained on (its training split is used) or a plain folder.")]
    = None,
    eval_: Annotated[Optional[list[Path]], typer.Option("--eval", metavar="DIR", help="Held-out real images to "
                                                        "measure fidelity on (repeat for several sets): the "
                                                        "training data's folder gives its validation split, another "
                                                        "labelled set all its images. Default: --calib's validation "
                                                        "split.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="At most this many images per --eval set "
                                                      "(drawn, seeded).")] = None,
    target: Annotated[QuantizeTarget, typer.Option(help="Where the INT8 bundle runs: ort and openvino take "
                                                   "asymmetric activation ranges; tensorrt needs symmetric ones "
                                                   "(zero points 0).")] = "ort",
    method: Annotated[Method, typer.Option(help="INT8 calibration method; auto tries each and keeps the one that "
                                           "agrees best with FP32 on tuning images.")] = "auto",
    calib_images: Annotated[int, typer.Option(min=1, help="INT8 calibration images.")] = 300,
    keep_fp32: Annotated[Optional[list[str]], typer.Option(metavar="GROUP", help="Layer groups kept FP32 from "
                                                           "the start: by role stem, squeeze_excite, depthwise, "
                                                           "pointwise, full, head; by depth stage0, stage1, ...")]
    = None,
    accept_fidelity: Annotated[bool, typer.Option(help="Write the bundle even when it misses the fidelity "
                                                  "targets (the report and manifest say which).")] = False,
):
    """Make a reduced-precision bundle of the same contract, its fidelity against the FP32 bundle measured on
    real held-out images (written beside it and into its manifest); one that misses the targets is refused."""
    from export.precision import quantize_bundle
    from export.stages.quantize import METHODS, QuantizeSpec

    if precision == Precision.bf16:
        spec = None
        out = out or bundle.with_name(bundle.name + ".bf16.fidelity.json")
    else:
        if out is None:
            fail(ConfigError(f"--precision {precision.value} needs -o OUT.onnx, the bundle to write"))
        methods = METHODS if method == Method.auto else (method.value,)
        spec = guarded(lambda: QuantizeSpec(precision.value, target.value, methods, calib_images,
                                            tuple(keep_fp32 or ())))
    with progress_bar(with_status=False) as bar:
        task = bar.add_task("explaining with both bundles", total=None)
        outcome = guarded(lambda: quantize_bundle(
            bundle, spec, out, calib, list(eval_ or []), eval_limit, accept_fidelity, log=console.print,
            progress=lambda done, total: bar.update(task, completed=done, total=total)))
    _print_fidelity(outcome.figures)
    if outcome.bundle is not None:
        console.print(f"wrote {outcome.bundle} ({outcome.bundle.stat().st_size / 1e6:.1f} MB), its sidecar and "
                      f"{outcome.report.name}", soft_wrap=True)
    else:
        console.print(f"wrote {outcome.report}: BF16 needs no new bundle; run the FP32 one with --backend "
                      "openvino-bf16", soft_wrap=True)
    if not outcome.figures["passed"]:
        console.print("[yellow]accepted below the fidelity targets:[/yellow] " + "; ".join(outcome.figures["failed"]),
                      soft_wrap=True)


def _print_fidelity(figures: dict) -> None:
    console.print(f"fidelity on {figures['images']} held-out images ({figures['backend']}, {figures['precision']}):")
    rows = [("top-1 agreement", f"{figures['top1_agreement']:.4f}"),
            ("max / mean |delta p|", f"{figures['max_abs_probability_difference']:.4f} / "
                                     f"{figures['mean_abs_probability_difference']:.5f}"),
            ("referral agreement", f"{figures['referral_agreement']:.4f}"),
            ("GradCAM++ Pearson median / 5th pct", f"{figures['gradcampp_pearson']['median']:.4f} / "
                                                   f"{figures['gradcampp_pearson']['p5']:.4f}")]
    if "melanoma" in figures:
        mel = figures["melanoma"]
        low, high = mel["fp32"]["sensitivity_ci95"]
        rows.append(("melanoma sensitivity FP32 -> candidate", f"{mel['fp32']['sensitivity']:.3f} ({low:.3f}-"
                     f"{high:.3f}) -> {mel['candidate']['sensitivity']:.3f}"))
        rows.append(("melanoma specificity FP32 -> candidate", f"{mel['fp32']['specificity']:.3f} -> "
                     f"{mel['candidate']['specificity']:.3f}"))
    if "ece" in figures:
        rows.append(("ECE FP32 -> candidate", f"{figures['ece']['fp32']:.4f} -> {figures['ece']['candidate']:.4f}"))
    for name, value in rows:
        console.print(f"  {name:<40} {value}", highlight=False)
    console.print("  [green]meets the fidelity targets[/green]" if figures["passed"] else
                  "  [red]misses:[/red] " + "; ".join(figures["failed"]), soft_wrap=True)


@app.command("all")
def export_all_command(
    checkpoint: CheckpointArg = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for model.onnx, reports, engine.")] = Path("export"),
    image_size: SizeOpt = None,
    cam_layer: LayerOpt = "last",
    dynamic_batch: DynamicBatchOpt = False,
    images: Annotated[Optional[Path], typer.Option(help="Real images to verify on, too.")] = None,
    fp16: Annotated[bool, typer.Option(help="FP16 engine where TensorRT exists.")] = False,
    from_seed: SeedOpt = None,
    arch: ArchOpt = None,
    cavs: CavsOpt = None,
    calibration: CalibrationOpt = None,
):
    """Chain onnx -> verify -> check (-> trt where TensorRT and a GPU exist)."""
    from export.pipeline import export_all
    from export.stages.tensorrt import EngineSpec

    source = _source(checkpoint, from_seed, arch, image_size, calibration)
    spec = _spec(source, image_size, cam_layer, dynamic_batch, 20)
    try:
        summary = export_all(source, spec, out, images, EngineSpec(fp16=fp16), log=console.print,
                             concepts=_concepts(cavs, source, spec.image_size))
    except MnetError as error:
        fail(error)
    if not (summary["verify"] and summary["check"]):
        raise typer.Exit(1)


@app.command()
def triton(
    bundle: Annotated[Path, typer.Argument(help="An ONNX bundle (model.onnx with its sidecar); export it with "
                                           "--dynamic-batch so that Triton's batches run at once.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="A new folder for the model repository.")],
    standalone: Annotated[bool, typer.Option(help="One Python model running the bundle in-process with ONNX "
                                             "Runtime (what mnet serve runs) instead of the GPU pair.")] = False,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest dynamic batch.")] = 8,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="How long a request may wait for batch mates "
                                                    "(microseconds).")] = GPU_QUEUE_DELAY_US,
    instances: Annotated[int, typer.Option(min=1, help="Instances of the Python model.")] = 1,
    fp16: Annotated[bool, typer.Option(help="TensorRT precision of melanomanet_onnx: FP16 (or FP32).")] = True,
    sys_path: Annotated[Optional[str], typer.Option(help="Folders holding melanomanet-edge's `runtime` and its "
                                                    "packages on the serving machine, ':'-separated (when not "
                                                    "installed in Triton's Python).")] = None,
):
    """Write a Triton model repository: melanomanet_onnx (ONNX Runtime + TensorRT FP16 on the GPU) and melanomanet
    (the Python model that decodes, explains and reports, calling the graph through BLS), or --standalone."""
    from runtime.serving.repository import ServingOptions, write_repository

    options = guarded(lambda: ServingOptions(max_batch, max_queue_delay_us, instances, fp16=fp16,
                                             sys_path=tuple(filter(None, (sys_path or "").split(":")))))
    guarded(lambda: write_repository(bundle, out, options, standalone))
    kind, flags = ("standalone", "") if standalone else ("melanomanet_onnx + melanomanet",
                                                         " --disable-auto-complete-config")
    console.print(f"wrote the model repository {out} ({kind}); start it with: tritonserver --model-repository "
                  f"{out}{flags} (see {out}/README.md)", soft_wrap=True)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("-o", "--out", help="The private key file to write (KEY.pem, mode 0600); "
                                      "the public key goes beside it as KEY.pub.pem.")],
):
    """Make an Ed25519 key pair for signing bundles (keep the private key off the devices; give them the .pub.pem
    through --trusted-keys)."""
    from runtime.signing import generate_key_pair

    private, public, identifier = guarded(lambda: generate_key_pair(out))
    console.print(f"wrote {private} (private: keep it secret) and {public} (public: give it to the devices); key id "
                  f"{identifier}", soft_wrap=True)


@app.command()
def sign(
    artifacts: Annotated[Optional[list[Path]], typer.Argument(
        metavar="BUNDLES", help="Bundles (model.onnx: its sidecar is signed) or model records (.json) to sign.")
                         ] = None,
    key: Annotated[Path, typer.Option(help="The Ed25519 private key (from mnet-export keygen).")] = ...,
    abcd: Annotated[bool, typer.Option(help="Also sign the ABCD analysis's installed model files (each "
                                       "segmenter's record and the rules).")] = False,
):
    """Sign what a device loads with your private key: a bundle's sidecar (its sha256 and manifest) and, with
    --abcd, the ABCD segmenters' records and rules; writes <record>.sig beside each. The runtime checks them
    against --trusted-keys."""
    from runtime.abcde.segmenter import model_records
    from runtime.manifest import read_sidecar, sidecar_path
    from runtime.signing import load_private_key, sign_record

    if not artifacts and not abcd:
        fail(ConfigError("give the bundles to sign (model.onnx), --abcd, or both"))
    private = guarded(lambda: load_private_key(key))
    records = []
    for artifact in artifacts or []:
        if not artifact.is_file():
            fail(ConfigError(f"{artifact}: not found; give a bundle (model.onnx with its sidecar) or a .json record"))
        if artifact.suffix == ".json":
            records.append(artifact)
        else:
            guarded(lambda: read_sidecar(artifact))  # sign only a bundle that still matches its sidecar
            records.append(sidecar_path(artifact))
    records += model_records() if abcd else []
    for record in records:
        console.print(f"signed {record} -> {sign_record(record, private).name}", soft_wrap=True)


def main() -> None:
    """The `mnet-export` entry point."""
    from runtime.app.console import run_app

    run_app(app, "mnet-export", "train,export", {"check": "export"})


if __name__ == "__main__":
    main()
