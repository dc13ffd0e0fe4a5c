"""mnet-export: numerics against PyTorch, the TensorRT op check, engine-builder behaviour without TensorRT."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from export.cli import app
from export.source import load_source
from export.spec import ExportSpec
from export.stages.check import check_tensorrt
from export.stages.onnx import to_onnx
from export.stages.verify import verify
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.manifest import MANIFEST_KEY
from runtime.uncertainty import draw_mc_mask
from tests.conftest import SAMPLES
from tests.seed_reference import SeedModel, save_seed_checkpoint

pytestmark = pytest.mark.slow


def figures(report, suffix):
    return [f["value"] for name, f in report.figures.items() if name.endswith(suffix)]


@pytest.mark.parametrize("image_size", [224, 384])
def test_last_layer_export_verifies(checkpoint, tmp_path, image_size):
    source = load_source(checkpoint)
    path = to_onnx(source, ExportSpec(image_size=image_size), tmp_path / "model.onnx")
    report = verify(path, source, SAMPLES)
    assert report.passed, report.failures
    assert max(figures(report, ".logits_abs")) <= 1e-4
    assert max(figures(report, "all_keep_mask_vs_logits_abs")) == 0.0
    assert max(figures(report, "head_under_mask_abs")) <= 1e-5
    assert min(figures(report, "gradcampp_pearson")) >= 0.999
    assert len(figures(report, ".logits_abs")) == 5  # random input + 4 real images


def test_intermediate_layer_export_verifies(checkpoint, tmp_path):
    source = load_source(checkpoint)
    path = to_onnx(source, ExportSpec(image_size=224, cam_layer="backbone.blocks.4"), tmp_path / "mid.onnx")
    report = verify(path, source, SAMPLES)
    assert report.passed, report.failures
    assert max(figures(report, "gradients_rel")) <= 1e-5
    assert min(figures(report, "gradcampp_pearson")) >= 0.999
    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["image", "mc_mask", "cam_class"]


def test_bundle_is_self_contained_and_carries_the_manifest(bundle, checkpoint):
    assert sorted(p.name for p in bundle.parent.iterdir()) == [bundle.name, f"{bundle.name}.json"]  # no external data
    model = onnx.load(str(bundle))
    meta = {p.key: p.value for p in model.metadata_props}
    manifest = json.loads(meta[MANIFEST_KEY])
    assert manifest["class_names"] == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    assert manifest["preprocessing"]["image_size"] == 224
    assert manifest["source_sha256"] == load_source(checkpoint).sha256
    assert set(manifest["outputs"]) == {"logits", "mc_logits", "cam_activations", "cam_gradients", "embedding"}
    assert manifest["tolerances"]["logits_abs"] == 1e-4 and manifest["flag_threshold"] == 0.5
    assert manifest["model_card"].startswith("docs/model-card.md")
    assert not any(node.op_type in ("Dropout", "Bernoulli", "RandomUniformLike") for node in model.graph.node)


def test_mc_logits_follow_the_mask_and_batch_is_dynamic(bundle, checkpoint):
    model, _ = load_source(checkpoint).model, None
    backend = OnnxRuntimeBackend(bundle)
    images = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    mask = draw_mc_mask(7, 1280, 0.3, seed=11)
    out = backend.infer({"image": images, "mc_mask": mask})
    with torch.no_grad():
        embedding = model.embed(model.forward_features(torch.from_numpy(images)))
        end_to_end = model.head(embedding[:, None, :] * torch.from_numpy(mask)[None]).numpy()
        head_alone = model.head(torch.from_numpy(out["embedding"])[:, None, :] * torch.from_numpy(mask)[None]).numpy()
    assert out["mc_logits"].shape == (3, 7, 9)
    np.testing.assert_allclose(out["mc_logits"], head_alone, atol=1e-5)
    np.testing.assert_allclose(out["mc_logits"], end_to_end, atol=1e-4)
    assert out["cam_gradients"].shape == (1, 9, 1280, 1, 1)


def test_check_passes_default_export(bundle):
    report = check_tensorrt(bundle)
    assert report.passed and report.op_counts["Conv"] > 50


def _graph_with(op_type, training=True):
    inputs = ["x"]
    initializers = []
    if op_type == "Dropout":
        initializers = [helper.make_tensor("ratio", TensorProto.FLOAT, [], [0.3]),
                        helper.make_tensor("training", TensorProto.BOOL, [], [training])]
        inputs = ["x", "ratio", "training"]
    node = helper.make_node(op_type, inputs, ["y"], name=f"my_{op_type.lower()}")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize("op_type", ["Dropout", "Bernoulli"])
def test_check_names_the_unsupported_op(tmp_path, op_type):
    path = tmp_path / "bad.onnx"
    onnx.save(_graph_with(op_type), str(path))
    result = CliRunner().invoke(app, ["check", str(path), "--target", "tensorrt"])
    assert result.exit_code == 1
    assert op_type in result.output and f"my_{op_type.lower()}" in result.output


def test_check_accepts_inference_mode_dropout(tmp_path):
    path = tmp_path / "ok.onnx"
    onnx.save(_graph_with("Dropout", training=False), str(path))
    assert check_tensorrt(path).passed


def test_trt_without_tensorrt_exits_2(bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the real build runs in make test-gpu")
    except ImportError:
        pass
    result = CliRunner().invoke(app, ["trt", str(bundle), "-o", str(tmp_path / "m.engine"), "--fp16"])
    assert result.exit_code == 2
    assert "TensorRT is not installed" in result.output and "gpu" in result.output
    assert not (tmp_path / "m.engine").exists()


def test_export_all_chains_stages(checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["all", str(checkpoint), "-o", str(tmp_path), "--image-size", "160"])
    assert result.exit_code == 0, result.output
    stages = [line.split()[:2] for line in result.output.splitlines() if line.strip()]
    for stage, state in (("onnx", "ok"), ("verify", "ok"), ("check", "ok")):
        assert [stage, state] in stages, result.output
    assert ["trt", "ok"] in stages or ["trt", "skip"] in stages, "built where TensorRT is, skipped elsewhere"
    assert (tmp_path / "model.onnx").exists() and (tmp_path / "model.onnx.json").exists()
    assert json.loads((tmp_path / "verify.json").read_text())["passed"] is True


def test_seed_checkpoint_matches_reference_preprocessing(tmp_path):
    """A reference-code .pth exported with --from-seed gives, on a real image, the probabilities the
    reference computes: PIL open, torchvision Resize((S, S)), ToTensor, Normalize(ImageNet)."""
    from PIL import Image
    from torchvision import transforms

    from runtime.predictor import Predictor

    torch.manual_seed(3)
    seed_model = SeedModel().eval()
    with torch.no_grad():
        seed_model.classifier[1].weight.mul_(20)
    pth = save_seed_checkpoint(seed_model, tmp_path / "best_model.pth")
    out = tmp_path / "seed.onnx"
    result = CliRunner().invoke(app, ["onnx", "--from-seed", str(pth), "--arch", "efficientnet_v2_s",
                                      "--image-size", "192", "-o", str(out)])
    assert result.exit_code == 0, result.output
    image_path = SAMPLES / "ISIC_0034376.jpg"
    reference_transform = transforms.Compose([
        transforms.Resize((192, 192)), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.no_grad():
        expected = torch.softmax(seed_model(reference_transform(Image.open(image_path).convert("RGB"))[None]), 1)[0]
    ours = Predictor(out, abcde=False).predict(image_path).probabilities
    assert int(np.argmax(ours)) == int(expected.argmax())
    np.testing.assert_allclose(ours, expected.numpy(), atol=2e-3)


def test_unknown_cam_layer_lists_the_valid_ones(checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["onnx", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
                                      "--cam-layer", "backbone.nope"])
    assert result.exit_code == 1
    assert "backbone.nope" in result.output and "backbone.blocks.4" in result.output


def test_checking_an_onnx_file_needs_no_pytorch(bundle):
    """`mnet-export check` reads the graph with onnx alone: with torch, torchvision and timm unimportable it still
    checks the bundle (the export extra, not train)."""
    import subprocess
    import sys

    blocked = ("import sys; sys.modules.update(dict.fromkeys(('torch', 'torchvision', 'timm'))); "
               f"sys.argv = ['mnet-export', 'check', {str(bundle)!r}]; from export.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "all parseable by TensorRT 10" in done.stderr + done.stdout, done.stderr[-2000:]
