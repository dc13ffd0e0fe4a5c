"""`mnet train` options: validated choices, what the manifest records, early stopping, periodic checkpoints,
and pretrained initialisation (offline: a clear refusal; from the local cache: the cached weights)."""

import json

import huggingface_hub
import pytest
import torch
from typer.testing import CliRunner

from melanomanet.checkpoint import load_checkpoint, read_checkpoint
from melanomanet.cli import app
from melanomanet.data.synth import write_dataset
from melanomanet.model import build_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_dataset(folder, count=64, seed=3, size=64)
    return folder


@pytest.mark.parametrize("option, value, choices", [
    ("--loss", "dice", "'ce', 'focal'"),
    ("--optimizer", "lamb", "'adamw', 'adam', 'sgd'"),
    ("--scheduler", "step", "'cosine', 'none'"),
    ("--arch", "resnet50", "'tf_efficientnetv2_b0'"),
])
def test_unknown_choices_are_refused_with_the_list(tiny_data, tmp_path, option, value, choices):
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), "--out", str(tmp_path), option, value])
    assert result.exit_code == 2
    assert value in result.output and choices in " ".join(result.output.split()).replace("│ ", "")
    assert not (tmp_path / "last.safetensors").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--lr", "0"], "--lr must be positive"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--pretrained", "--init-weights", "w.pth"], "choose one"),
    (["--sync-bn"], "--sync-bn"),
])
def test_values_that_cannot_be_honoured_exit_2_with_one_line(tiny_data, tmp_path, arguments, message):
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), "--out", str(tmp_path), "--epochs", "1",
                                      "--image-size", "64", *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("error:") == 1 and "Traceback" not in result.output


@pytest.mark.slow
def test_options_run_and_are_recorded(tiny_data, tmp_path):
    """SGD without a schedule or class weights, focal loss, periodic checkpoints; early stopping ends a run whose
    learning rate is too small to improve on its first epoch."""
    result = CliRunner().invoke(app, [
        "train", "--data", str(tiny_data), "--out", str(tmp_path), "--epochs", "6", "--image-size", "64",
        "--batch-size", "16", "--optimizer", "sgd", "--scheduler", "none", "--no-class-weights", "--loss", "focal",
        "--focal-gamma", "1.5", "--lr", "1e-12", "--weight-decay", "0", "--early-stopping", "2", "--save-every", "1"])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 3 and "stopped early" in result.output
    kept = sorted(p.name for p in tmp_path.glob("epoch_*.safetensors"))
    assert kept == [f"epoch_00{k}.safetensors" for k in (1, 2, 3)]
    _, manifest = load_checkpoint(tmp_path / "last.safetensors")
    recorded = manifest.extra["train_config"]
    assert (recorded["optimizer"], recorded["scheduler"], recorded["loss"], recorded["class_weights"]) == \
        ("sgd", "none", "focal", False)
    assert recorded["focal_gamma"] == 1.5 and recorded["early_stopping"] == 2
    _, metadata = read_checkpoint(tmp_path / "last.safetensors")
    groups = json.loads(metadata["mnet.train_state"])["optimizer"]
    assert groups[0]["momentum"] == 0.9 and groups[0]["nesterov"] and groups[0]["lr"] == 1e-12


def test_pretrained_offline_fails_at_once_naming_init_weights(tiny_data, tmp_path, monkeypatch):
    """Nothing cached and the hub unreachable (here a closed loopback port): no download is tried."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
                                      "--epochs", "1", "--pretrained"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "--init-weights FILE" in message and "127.0.0.1:9" in message and "timm/tf_efficientnetv2_b0" in message
    assert not (tmp_path / "run").exists()


def test_pretrained_loads_timm_weights_from_the_local_cache(tmp_path, monkeypatch):
    """The Hugging Face cache layout timm reads, filled with known weights: --pretrained takes them offline."""
    import timm
    from safetensors.torch import save_file

    revision = "0" * 40
    repo = tmp_path / "models--timm--tf_efficientnetv2_b0.in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    torch.manual_seed(9)
    imagenet = timm.create_model("tf_efficientnetv2_b0", pretrained=False)
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()},
              str(repo / "snapshots" / revision / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = build_model("tf_efficientnetv2_b0", pretrained=True)
    backbone = model.backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in imagenet.state_dict().items() if k in backbone)
    assert torch.equal(model.backbone.conv_stem.weight, imagenet.conv_stem.weight)
