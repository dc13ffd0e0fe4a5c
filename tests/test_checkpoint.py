import pickle

import pytest
import torch

from melanomanet.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_seed_checkpoint,
    make_manifest,
    save_checkpoint,
)
from melanomanet.model import build_model
from tests.seed_reference import SeedModel, save_seed_checkpoint


def test_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = build_model("tf_efficientnetv2_b0").eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, make_manifest(model, 128, "synthetic"))
    loaded, manifest = load_checkpoint(path)
    assert not loaded.training
    assert manifest.architecture == "tf_efficientnetv2_b0" and manifest.preprocessing.image_size == 128
    assert manifest.target_layer == "backbone.bn2" and manifest.is_demo
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))


@pytest.mark.parametrize("payload", ["torch_save", "raw_pickle"])
def test_pickle_payload_is_refused(tmp_path, payload):
    path = tmp_path / "evil.safetensors"
    if payload == "torch_save":
        torch.save({"x": torch.zeros(1)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


def test_seed_format_pth_loads_with_identical_logits(tmp_path):
    """The MelanomaNet reference layout: torchvision features as `backbone`, `classifier` = (Dropout, Linear)."""
    torch.manual_seed(1)
    seed = SeedModel().eval()
    path = tmp_path / "best_model.pth"
    save_seed_checkpoint(seed, path, epoch=7, metrics={"val_acc": 0.85})
    model, manifest = load_seed_checkpoint(path, "efficientnet_v2_s", image_size=224)
    assert manifest.preprocessing.interpolation == "bilinear_antialias"
    assert manifest.target_layer == "backbone.7"
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images), seed(images), rtol=0, atol=0)
