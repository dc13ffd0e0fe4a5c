import os
import pickle

import pytest
import torch

from melanomanet.checkpoint import CheckpointError, load_checkpoint, make_manifest, save_checkpoint
from melanomanet.model import build_model
from melanomanet.reference import load_seed_checkpoint
from tests.seed_reference import SeedModel, as_numpy1_pickle, save_seed_checkpoint


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


@pytest.mark.parametrize("numpy_paths", ["numpy2", "numpy1"])
def test_reference_trainer_file_converts_with_reference_logits(tmp_path, numpy_paths):
    """The exact structure the reference trainer saves (AdamW and cosine states, metrics with None and numpy
    arrays), under numpy 2.x and 1.x module paths; the architecture is read off the weights."""
    torch.manual_seed(2)
    seed = SeedModel().eval()
    path = save_seed_checkpoint(seed, tmp_path / "best_model.pth", epoch=23)
    if numpy_paths == "numpy1":
        as_numpy1_pickle(path)
    model, manifest = load_seed_checkpoint(path, image_size=224)
    assert manifest.architecture == "efficientnet_v2_s"
    assert manifest.metrics["accuracy"] == 0.8561 and manifest.metrics["epoch"] == 23
    assert "auc_macro" not in manifest.metrics and "confusion_matrix" not in manifest.metrics
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images), seed(images), rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["efficientnet_v2_m", "efficientnet_v2_l"])
def test_reference_files_of_every_released_size_convert(tmp_path, architecture):
    torch.manual_seed(4)
    seed = SeedModel(architecture).eval()
    path = save_seed_checkpoint(seed, tmp_path / "best_model.pth")
    model, manifest = load_seed_checkpoint(path, image_size=64)
    assert manifest.architecture == architecture and manifest.target_layer == "backbone.8"
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), seed(images), rtol=0, atol=1e-4)
    with pytest.raises(CheckpointError, match=f"do not fit --arch efficientnet_v2_s \\(they are {architecture}\\)"):
        load_seed_checkpoint(path, "efficientnet_v2_s")


def test_bare_state_dict_converts(tmp_path):
    torch.manual_seed(5)
    seed = SeedModel().eval()
    torch.save(seed.state_dict(), tmp_path / "weights.pth")
    model, manifest = load_seed_checkpoint(tmp_path / "weights.pth", "efficientnet_v2_s", image_size=96)
    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(images), seed(images), rtol=0, atol=0)


class _RunsCode:
    def __init__(self, function, argument):
        self.call = (function, (argument,))

    def __reduce__(self):
        return self.call


@pytest.mark.parametrize("function, named", [(os.system, f"{os.system.__module__}.system"),
                                             (eval, "builtins.eval")])
def test_a_pickle_that_names_code_is_refused_without_running_it(tmp_path, function, named):
    marker = tmp_path / "ran"
    payload = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w')"
    path = tmp_path / "best_model.pth"
    torch.save({"epoch": 1, "model_state_dict": SeedModel().state_dict(), "metrics": {"x": _RunsCode(function,
                                                                                                     payload)}}, path)
    with pytest.raises(CheckpointError) as caught:
        load_seed_checkpoint(path)
    message = str(caught.value)
    assert named in message and "refused without running it" in message
    assert "weights_only=False" not in message
    assert not marker.exists()


def test_a_file_that_is_not_a_reference_checkpoint_says_so(tmp_path):
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a MelanomaNet reference checkpoint"):
        load_seed_checkpoint(tmp_path / "other.pth")


def _safetensors_with_header_length(path, header_length: int):
    """A real safetensors file whose JSON header is padded to exactly `header_length` bytes."""
    from safetensors.torch import save_file

    save_file({"x": torch.arange(4.0)}, str(path), metadata={"pad": ""})
    natural = int.from_bytes(path.read_bytes()[:8], "little")
    save_file({"x": torch.arange(4.0)}, str(path), metadata={"pad": "p" * (header_length - natural)})
    assert int.from_bytes(path.read_bytes()[:8], "little") == header_length
    return path


@pytest.mark.parametrize("header_length", [0x80, 0x280, 0x480, 0xAA80])
def test_safetensors_whose_header_length_starts_with_0x80_load(tmp_path, header_length):
    """The first byte of such a file is 0x80, a pickle's protocol opcode; it is still a valid checkpoint."""
    from melanomanet.checkpoint import read_checkpoint

    path = _safetensors_with_header_length(tmp_path / "m.safetensors", header_length)
    assert path.read_bytes()[0] == 0x80
    tensors, _ = read_checkpoint(path)
    assert torch.equal(tensors["x"], torch.arange(4.0))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_protocol_are_still_refused(tmp_path, protocol):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"x": list(range(300))}, protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
