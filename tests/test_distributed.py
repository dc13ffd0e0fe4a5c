"""DistributedDataParallel on CPU: two gloo processes under torchrun, resumed under torchrun again."""

import json
import math
import os
import subprocess
import sys

import pytest

from melanomanet.checkpoint import load_checkpoint
from melanomanet.data.isic import read_ground_truth, stratified_split
from melanomanet.data.synth import write_dataset


def _run(arguments, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=300, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_two_gloo_processes_train_disjoint_shards_and_resume(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(data, count=81, seed=1, size=64)
    common = ["--data", str(data), "--out", str(run), "--image-size", "64", "--batch-size", "8", "--lr", "3e-3"]
    first = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                  "-m", "melanomanet.rank", *common, "--epochs", "2"], tmp_path)
    second = _run([sys.executable, "-m", "runtime", "train", *common, "--epochs", "4", "--nproc", "2",
                   "--resume", str(run / "last.safetensors")], tmp_path)

    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    train_images = len(stratified_split(read_ground_truth(data / "ISIC_2019_Training_GroundTruth.csv").targets,
                                        0)["train"])
    assert train_images % 2 == 1
    for row in history:
        shards = row["shards"]
        assert shards["world_size"] == 2 and shards["unseen"] == 0
        assert shards["images_per_rank"] == [math.ceil(train_images / 2)] * 2
        assert shards["duplicated"] == 1
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "history.json", "last.safetensors"]
    model, manifest = load_checkpoint(run / "last.safetensors")
    assert manifest.extra["world_size"] == 2 and manifest.metrics["epoch"] == 4
    for output in (first, second):
        assert output.count("val balanced acc") == 1 and output.count("checkpoints in") == 1
