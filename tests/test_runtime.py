"""The torch-free runtime: numerics against PyTorch and pytorch-grad-cam, uncertainty, reports, bad input."""

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from melanomanet.checkpoint import load_checkpoint
from melanomanet.cli import app
from runtime.errors import BackendError, ManifestError
from runtime.predictor import Predictor
from runtime.preprocess import preprocess
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_probabilities_match_pytorch_eval(bundle, checkpoint):
    model, _ = load_checkpoint(checkpoint)
    predictor = Predictor(bundle, abcde=False)
    for path in sorted(SAMPLES.glob("*.jpg")):
        result = predictor.predict(path)
        tensor = torch.from_numpy(preprocess(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB),
                                             predictor.manifest.preprocessing))[None]
        with torch.no_grad():
            expected = torch.softmax(model(tensor), 1)[0].numpy()
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-4)


def test_uncertainty_identity_and_seeding(bundle):
    image = SAMPLES / "ISIC_0034376.jpg"
    first = Predictor(bundle, mc_samples=20, seed=5, abcde=False).predict(image).uncertainty
    again = Predictor(bundle, mc_samples=20, seed=5, abcde=False).predict(image).uncertainty
    other = Predictor(bundle, mc_samples=20, seed=6, abcde=False).predict(image).uncertainty
    assert first.predictive == pytest.approx(first.aleatoric + first.epistemic, abs=1e-6)
    assert first.epistemic >= 0 and first.aleatoric >= 0
    assert first.predictive == again.predictive and np.array_equal(first.mean_probabilities, again.mean_probabilities)
    assert first.predictive != other.predictive
    assert first.mc_samples == 20 and first.flagged == (first.predictive > 0.5)


def test_gradcampp_matches_pytorch_grad_cam(bundle, checkpoint):
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from runtime.explain.gradcampp import upsample

    model, manifest = load_checkpoint(checkpoint)
    predictor = Predictor(bundle, abcde=False)
    layer = model.get_submodule(manifest.target_layer)
    for name in ("ISIC_0034335.jpg", "ISIC_0034500.jpg"):
        result = predictor.predict(SAMPLES / name)
        tensor = torch.from_numpy(preprocess(result.view_rgb, predictor.manifest.preprocessing))[None]
        for target in (result.cam_class, (result.cam_class + 3) % 9):
            with GradCAMPlusPlus(model=model, target_layers=[layer]) as cam:
                reference = cam(input_tensor=tensor.requires_grad_(True), targets=[ClassifierOutputTarget(target)])[0]
            ours = upsample(result.class_maps[target], 224, 224)
            if np.ptp(reference) == 0:  # no positive evidence for the class (UNK has no training images)
                np.testing.assert_allclose(ours, reference, atol=1e-6)
            else:
                assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] >= 0.999


def test_run_writes_reports_and_panel(bundle, tmp_path):
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(bundle), "-o", str(tmp_path),
                                      "--mc-samples", "10", "--mm-per-px", "0.02"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    images = [row for row in rows if row["input"].endswith(".jpg")]
    assert len(images) == 5 and all(row["status"] == "ok" for row in images)
    assert [(Path(row["input"]).name, row["status"]) for row in rows if row not in images] == [("README.md", "skipped")]
    report = json.loads((tmp_path / "ISIC_0034376.json").read_text())
    assert report["schema"] == "mnet.report/1"
    for key in ("image", "model", "prediction", "uncertainty", "gradcampp", "abcde", "timings_ms", "disclaimer"):
        assert key in report
    assert set(report["prediction"]["probabilities"]) == {"MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"}
    assert sum(report["prediction"]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert report["uncertainty"]["mc_samples"] == 10
    assert report["abcde"]["diameter"]["feret_mm"] is not None
    assert "DEMO WEIGHTS" in report["disclaimer"] and report["demo_weights"] is True
    assert report["model"]["sha256"] and (tmp_path / report["gradcampp"]["heatmap"]).exists()
    panel = cv2.imread(str(tmp_path / "ISIC_0034376.png"))
    assert panel.shape[1] > 1000 and panel.shape[0] > 600
    assert not list(tmp_path.glob("*.tmp"))
    assert [path.name for path in tmp_path.glob(".*")] == [".mnet-run.lock"], "only the folder's lock is hidden"


def test_explain_a_requested_class(bundle):
    result = Predictor(bundle, abcde=False).predict(SAMPLES / "ISIC_0034335.jpg", cam_class="MEL")
    assert result.to_dict()["gradcampp"]["class"] == "MEL"


def test_abcd_beside_inference_equals_one_stage_after_another(bundle):
    """`predict` measures ABCD on a second thread while the network runs; the report is the sequential one's."""
    predictor = Predictor(bundle)
    for path in sorted(SAMPLES.glob("*.jpg")):
        overlapped = predictor.predict(path)
        prepared = predictor.prepare(path)
        sequential = predictor.explain(prepared, predictor.infer(prepared))
        first, second = overlapped.to_dict(), sequential.to_dict()
        stages = [stage for stage in overlapped.timings_ms if stage != "total"]
        assert overlapped.timings_ms["total"] <= sum(overlapped.timings_ms[stage] for stage in stages) + 1.0
        for report in (first, second):
            report.pop("timings_ms")
        assert first == second


def test_a_bad_lesion_point_fails_its_image_only(bundle):
    from runtime.errors import ImageError
    from runtime.predictor import ImageOptions

    paths = sorted(SAMPLES.glob("*.jpg"))[:2]
    results = Predictor(bundle).predict_batch(paths, options=[ImageOptions(lesion_at=(5000.0, 10.0)),
                                                              ImageOptions()])
    assert isinstance(results[0], ImageError) and "outside the image" in str(results[0])
    assert results[1].abcde["status"] in ("measured", "unreliable")


def test_a_batch_total_does_not_count_abcd_and_the_network_twice(bundle):
    """In `predict_batch` ABCD runs while the network does: an image's total counts that time once."""
    result = Predictor(bundle).predict_batch([SAMPLES / "ISIC_0034376.jpg"])[0]
    timings = result.timings_ms
    stages = sum(value for stage, value in timings.items() if stage != "total")
    assert stages - min(timings["inference"], timings["abcde"]) - 0.01 <= timings["total"] < stages


def _bad_inputs(folder: Path) -> dict[str, bool]:
    """name -> whether it must be processed (True) or rejected with a readable error (False)."""
    sample = cv2.imread(str(SAMPLES / "ISIC_0034335.jpg"))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    data = (SAMPLES / "ISIC_0034335.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    cv2.imwrite(str(folder / "sixteen.png"), (sample.astype(np.uint16) * 257))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(sample, cv2.COLOR_BGR2BGRA))
    transparent = cv2.cvtColor(sample, cv2.COLOR_BGR2BGRA)
    transparent[..., 3] = 0
    cv2.imwrite(str(folder / "transparent.png"), transparent)
    cv2.imwrite(str(folder / "tiny.png"), sample[:1, :1])
    cv2.imwrite(str(folder / "huge.jpg"), cv2.resize(sample, (10000, 8000), interpolation=cv2.INTER_NEAREST))
    (folder / "no_images").mkdir()
    return {"empty.jpg": False, "text.jpg": False, "truncated.jpg": False, "sixteen.png": True, "gray.png": True,
            "rgba.png": True, "transparent.png": False, "tiny.png": False, "huge.jpg": True, "no_images": False}


def test_bad_inputs_are_reported_and_the_batch_goes_on(bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    expected = _bad_inputs(inputs)
    paths = [str(inputs / name) for name in expected] + [str(SAMPLES / "ISIC_0034338.jpg")]
    result = CliRunner().invoke(app, ["run", *paths, "--model", str(bundle), "-o", str(tmp_path / "out"),
                                      "--mc-samples", "4"])
    assert result.exit_code == 1
    rows = {Path(row["input"]).name: row for row in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["ISIC_0034338.jpg"]["status"] == "ok"
    for name, processed in expected.items():
        row = rows[name]
        if processed:
            assert row["status"] == "ok", row
        else:
            assert row["status"] == "failed" and name in row["error"], row
            assert any(word in row["error"] for word in ("Use", "Re-export", "Copy", "Pass", "folder", "Export"))


def test_transparency_is_composited_on_white(tmp_path):
    from runtime.imageio import load_image

    half = np.zeros((40, 40, 4), np.uint8)
    half[..., :3] = (0, 0, 200)  # BGR red
    half[:, :20, 3] = 255
    half[:, 20:, 3] = 128
    cv2.imwrite(str(tmp_path / "half.png"), half)
    rgb = load_image(tmp_path / "half.png")
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert tuple(rgb[0, 39]) == (227, 127, 127)  # 200 * 128/255 + 255 * 127/255 = 227.4; 255 * 127/255


def test_model_file_problems_are_clear(tmp_path, bundle):
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("hello")
    with pytest.raises(BackendError, match="model.onnx.*ONNX"):
        Predictor(not_onnx)
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),), str(foreign), dynamo=False)
    with pytest.raises(ManifestError, match="without a MelanomaNet manifest"):
        Predictor(foreign)
    result = CliRunner().invoke(app, ["run", str(SAMPLES), "--model", str(foreign), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "manifest" in result.output


NO_TORCH = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith("torch.") or name in ("timm", "torchvision"):
                raise ImportError("torch is blocked in this process")
    sys.meta_path.insert(0, Block())
    from runtime.app.batch import run_batch
    from runtime.predictor import Predictor
    outcomes = run_batch(Predictor(sys.argv[1], mc_samples=5), [sys.argv[2]], sys.argv[3]).outcomes
    assert all(o.status == "ok" for o in outcomes if o.input.endswith(".jpg")), [o.row for o in outcomes]
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    from melanomanet.cli import app
    from typer.testing import CliRunner
    result = CliRunner().invoke(app, ["abcde", sys.argv[2] + "/ISIC_0034335.jpg"])
    assert result.exit_code == 0, result.output
    print("ran", sum(o.status == "ok" for o in outcomes), "images without torch")
""")


def test_runtime_runs_where_torch_cannot_be_imported(bundle, tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(bundle), str(SAMPLES), str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ran 5 images without torch" in done.stdout


def test_no_module_under_runtime_imports_torch():
    offenders = [str(p) for p in (ROOT / "runtime").rglob("*.py")
                 if any(line.strip().startswith(("import torch", "from torch", "import timm", "from melanomanet",
                                                 "from export", "import melanomanet", "import export"))
                        for line in p.read_text().splitlines())]
    assert offenders == []


def test_upsampling_all_classes_at_once_equals_one_by_one():
    from runtime.explain.gradcampp import upsample, upsample_all

    maps = np.random.default_rng(0).random((9, 7, 7)).astype(np.float32)
    together = upsample_all(maps, 60, 45)
    for index in range(9):
        np.testing.assert_allclose(together[index], upsample(maps[index], 60, 45), atol=1e-6)
