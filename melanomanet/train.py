"""Training: AdamW with a cosine schedule, class-weighted cross-entropy or focal loss, best/last checkpoints."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from melanomanet.checkpoint import (
    OPTIMIZER_PREFIX,
    TRAIN_STATE_KEY,
    make_manifest,
    read_checkpoint,
    save_checkpoint,
)
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.data.isic import (
    DatasetError,
    class_weights,
    find_ground_truth,
    find_missing,
    missing_images_message,
    read_ground_truth,
    stratified_split,
)
from melanomanet.metrics import classification_report
from melanomanet.model import build_model
from runtime.manifest import CLASS_NAMES


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "tf_efficientnetv2_b0"
    epochs: int = 10
    image_size: int = 224
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    dropout: float = 0.3
    loss: str = "ce"
    focal_gamma: float = 2.0
    optimizer: str = "adamw"
    workers: int = 0
    skip_missing: bool = False
    init_weights: str | None = None
    resume: str | None = None
    trained_on: str = "unknown"


class FocalLoss(nn.Module):
    def __init__(self, weight: torch.Tensor | None, gamma: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        focal = (1 - log_probabilities.exp()) ** self.gamma * -log_probabilities
        if self.weight is not None:
            focal = focal * self.weight[targets]
        return focal.mean()


def prepare_data(config: TrainConfig):
    root = Path(config.data)
    labels = read_ground_truth(find_ground_truth(root))
    image_root = root if root.is_dir() else root.parent
    missing = find_missing(image_root, labels)
    splits = stratified_split(labels.targets, config.seed)
    if missing:
        if not config.skip_missing:
            raise DatasetError(missing_images_message(image_root, missing, len(labels.images)))
        present = ~np.isin(np.asarray(labels.images), missing)
        splits = {name: idx[present[idx]] for name, idx in splits.items()}
        if len(splits["train"]) == 0:
            raise DatasetError(f"{image_root}: every listed image is missing; nothing to train on")
    return image_root, labels, splits, missing


def train(config: TrainConfig, progress=None) -> dict:
    """Train and write `best.safetensors` and `last.safetensors` under `config.out`; return a summary."""
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image_root, labels, splits, missing = prepare_data(config)
    model = build_model(config.arch, len(CLASS_NAMES), config.dropout, config.init_weights).to(device)
    manifest = make_manifest(model, config.image_size, config.trained_on,
                             extra={"split_seed": config.seed, "train_config": asdict(config)})
    loaders = {
        split: torch.utils.data.DataLoader(
            IsicDataset(image_root, labels, splits[split], manifest.preprocessing, train=split == "train",
                        seed=config.seed),
            batch_size=config.batch_size, shuffle=split == "train", num_workers=config.workers,
            collate_fn=collate_skipping, generator=torch.Generator().manual_seed(config.seed))
        for split in ("train", "val")
    }
    weights = torch.from_numpy(class_weights(labels.targets[splits["train"]])).to(device)
    criterion = FocalLoss(weights, config.focal_gamma) if config.loss == "focal" else nn.CrossEntropyLoss(weights)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total_steps = max(1, config.epochs * len(loaders["train"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    state = {"epoch": 0, "best": -1.0, "history": [], "skipped_corrupt": 0}
    if config.resume:
        state = resume_from(config.resume, model, optimizer, scheduler)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(state["epoch"], config.epochs):
        model.train()
        losses = []
        for images, targets, skipped in loaders["train"]:
            state["skipped_corrupt"] += skipped
            if images is None:
                continue
            images, targets = images.to(device), targets.to(device)
            with torch.autocast(device_type=device, enabled=device == "cuda"):
                loss = criterion(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())
            if progress is not None:
                progress(epoch, losses[-1])
        report = evaluate_loader(model, loaders["val"], device, manifest.class_names)
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                 "val_accuracy": report["accuracy"], "val_balanced_accuracy": report["balanced_accuracy"]}
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        metrics = {k: v for k, v in entry.items() if v is not None}
        epoch_manifest = manifest.with_updates(metrics=metrics)
        if report["balanced_accuracy"] > state["best"]:
            state["best"] = report["balanced_accuracy"]
            save_checkpoint(out / "best.safetensors", model, epoch_manifest)
        save_checkpoint(out / "last.safetensors", model, epoch_manifest, optimizer_tensors(optimizer),
                        train_state={**state, "optimizer": optimizer_meta(optimizer),
                                     "scheduler": scheduler.state_dict()})
    (out / "history.json").write_text(json.dumps(state["history"], indent=2))
    return {"history": state["history"], "best_val_balanced_accuracy": state["best"],
            "missing_images": len(missing), "skipped_corrupt": state["skipped_corrupt"], "out": str(out)}


@torch.no_grad()
def predict_loader(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probabilities, targets = [], []
    for images, labels, _ in loader:
        if images is None:
            continue
        probabilities.append(torch.softmax(model(images.to(device)).float(), dim=1).cpu().numpy())
        targets.append(labels.numpy())
    return np.concatenate(probabilities), np.concatenate(targets)


def evaluate_loader(model, loader, device, class_names) -> dict:
    probabilities, targets = predict_loader(model, loader, device)
    return classification_report(targets, probabilities, class_names)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for parameter_id, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            tensors[f"{parameter_id}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def optimizer_meta(optimizer: torch.optim.Optimizer) -> list[dict]:
    return optimizer.state_dict()["param_groups"]


def resume_from(path: str, model, optimizer, scheduler) -> dict:
    tensors, metadata = read_checkpoint(path)
    if TRAIN_STATE_KEY not in metadata:
        raise DatasetError(f"{path}: holds no training state; resume from the run's last.safetensors")
    state = json.loads(metadata[TRAIN_STATE_KEY])
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)})
    optimizer_state: dict = {}
    for name, value in tensors.items():
        if name.startswith(OPTIMIZER_PREFIX):
            parameter_id, key = name[len(OPTIMIZER_PREFIX):].split(".", 1)
            optimizer_state.setdefault(int(parameter_id), {})[key] = value
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": state.pop("optimizer")})
    scheduler.load_state_dict(state.pop("scheduler"))
    return state
