import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from melanomanet.cli import app
from melanomanet.data.synth import render, sample_params, write_dataset
from melanomanet.evaluate import evaluate
from tests.conftest import REAL_GROUND_TRUTH


@pytest.mark.slow
def test_b0_learns_synthetic_classes_well_above_chance(trained):
    report = evaluate(str(trained["data"]), str(trained["checkpoint"]), split="test")
    print(f"held-out balanced accuracy {report['balanced_accuracy']:.3f} (chance 0.125)")
    assert report["samples"] == 24
    assert report["balanced_accuracy"] >= 0.25
    assert set(report) >= {"accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "auc", "confusion_matrix"}


@pytest.mark.slow
def test_resume_continues_from_last_epoch(trained, tmp_path):
    from melanomanet.train import TrainConfig, train

    out = tmp_path / "resumed"
    shutil.copytree(trained["last"].parent, out)
    summary = train(TrainConfig(data=str(trained["data"]), out=str(out), epochs=9, image_size=128, batch_size=8,
                                lr=2e-3, resume=str(out / "last.safetensors")))
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.skipif(not REAL_GROUND_TRUTH.exists(), reason="../shared/data not beside the checkout")
def test_train_without_images_counts_the_missing(tmp_path):
    shutil.copy(REAL_GROUND_TRUTH, tmp_path)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "25,331 of 25,331 images" in result.output and "--skip-missing" in result.output
    assert result.output.count("error:") == 1


def test_synthetic_dataset_layout_and_determinism(tmp_path):
    write_dataset(tmp_path / "a", count=9, seed=5, size=96)
    write_dataset(tmp_path / "b", count=9, seed=5, size=96)
    lines = (tmp_path / "a" / "ISIC_2019_Training_GroundTruth.csv").read_text().splitlines()
    assert lines[0] == "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK" and len(lines) == 10
    for name in ("SYN_0005_000000.jpg", "truth/SYN_0005_000000_mask.png", "truth/SYN_0005_000000.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_synthetic_dataset_labels_follow_a_custom_draw(tmp_path):
    def only_nevi(rng, index, hairs):
        return sample_params(rng, "NV", hairs=hairs)

    write_dataset(tmp_path, count=4, seed=1, size=64, hairs=False, draw=only_nevi)
    rows = (tmp_path / "ISIC_2019_Training_GroundTruth.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1:3] for row in rows] == [["0.0", "1.0"]] * 4
    truths = [json.loads(f.read_text()) for f in sorted((tmp_path / "truth").glob("*.json"))]
    assert [(t["label"], t["hairs"]) for t in truths] == [("NV", 0)] * 4


def test_synthetic_colour_truth_covers_lesion():
    params = sample_params(np.random.default_rng(3), "MEL")
    image, mask, coverage = render(params, 192)
    assert image.shape == (192, 192, 3) and mask.sum() > 0
    assert set(coverage) == set(params.colours)
    assert sum(coverage.values()) == pytest.approx(1.0)


def test_nevus_like_melanomas_differ_from_nevi_in_asymmetry_alone():
    """Measured on the rendered truth masks: the subtype's outlines are asymmetric where nevi are not, while
    their areas and colours are those of nevi."""
    from runtime.abcde.criteria import shape_asymmetry
    from runtime.abcde.shape import region

    rng = np.random.default_rng(11)
    melanomas = [p for p in (sample_params(rng, "MEL", hairs=False) for _ in range(120)) if p.subtype == "nevus_like"]
    nevi = [sample_params(rng, "NV", hairs=False) for _ in range(40)]
    assert 40 <= len(melanomas) <= 80

    def measured(params):
        _, mask, _ = render(params, 256)
        return max(shape_asymmetry(region(mask))), int(mask.sum())

    melanoma_asymmetry, melanoma_area = np.array([measured(p) for p in melanomas[:40]]).T
    nevus_asymmetry, nevus_area = np.array([measured(p) for p in nevi]).T
    ranked_above = np.mean(melanoma_asymmetry[:, None] > nevus_asymmetry[None, :])
    assert ranked_above >= 0.97, f"asymmetry AUC {ranked_above:.3f}"
    assert 0.85 <= np.median(melanoma_area) / np.median(nevus_area) <= 1.15
    assert {c for p in melanomas for c in p.colours} == {c for p in nevi for c in p.colours}


def test_skip_missing_trains_on_the_images_present(tmp_path):
    from melanomanet.data.layouts import prepare_data

    write_dataset(tmp_path, count=40, seed=2, size=64)
    gone = ["SYN_0002_000003", "SYN_0002_000017", "SYN_0002_000030"]
    for name in gone:
        (tmp_path / f"{name}.jpg").unlink()
    prepared = prepare_data(tmp_path, seed=0, skip_missing=True)
    labels, splits, missing = prepared.labels, prepared.splits, prepared.missing
    kept = {labels.images[i] for idx in splits.values() for i in idx}
    assert sorted(missing) == gone and len(kept) == 37 and not kept & set(gone)
