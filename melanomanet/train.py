"""Training: AdamW/Adam/SGD with a cosine schedule, class-weighted cross-entropy or focal loss, best/last and
periodic checkpoints, early stopping; one process or many under torchrun (DistributedDataParallel)."""

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
    load_initial_weights,
    make_manifest,
    read_checkpoint,
    save_checkpoint,
)
from melanomanet.data.dataset import IsicDataset, collate_skipping
from melanomanet.data.isic import DatasetError, class_weights
from melanomanet.data.layouts import prepare_data
from melanomanet.distributed import Distributed
from melanomanet.metrics import classification_report
from melanomanet.model import build_model
from melanomanet.options import Loss, Optimizer, Sampling, Scheduler
from runtime.errors import ConfigError
from runtime.manifest import CLASS_NAMES, Preprocessing, untrained_classes


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
    scheduler: str = "cosine"
    class_weights: bool = True
    early_stopping: int | None = None
    save_every: int | None = None
    workers: int = 0
    skip_missing: bool = False
    pretrained: bool = False
    init_weights: str | None = None
    sync_bn: bool = False
    resume: str | None = None
    trained_on: str = "unknown"
    layout: str | None = None
    freeze_stages: int = 0
    sampling: str = "shuffle"
    label_smoothing: float = 0.0
    ema_decay: float | None = None
    warmup_epochs: float = 0.0

    def __post_init__(self):
        for name, choices in (("loss", Loss), ("optimizer", Optimizer), ("scheduler", Scheduler),
                              ("sampling", Sampling)):
            value = str(getattr(self, name))
            if value not in {c.value for c in choices}:
                raise ConfigError(f"--{name} {value!r} is not one of: {', '.join(c.value for c in choices)}")
            setattr(self, name, value)
        positive = {"epochs": self.epochs, "image-size": self.image_size, "batch-size": self.batch_size,
                    "lr": self.lr, "early-stopping": self.early_stopping, "save-every": self.save_every}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"--{name} must be positive, got {value}")
        if not 0 <= self.dropout < 1 or self.weight_decay < 0 or self.focal_gamma < 0:
            raise ConfigError("--dropout must be in [0, 1), --weight-decay and --focal-gamma at least 0")
        if self.pretrained and self.init_weights:
            raise ConfigError("--pretrained and --init-weights both give starting weights; choose one")
        if not 0 <= self.label_smoothing < 1 or self.freeze_stages < 0 or self.warmup_epochs < 0:
            raise ConfigError("--label-smoothing must be in [0, 1), --freeze-stages and --warmup-epochs at least 0")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"--ema {self.ema_decay} must be in (0, 1), e.g. 0.999")
        if self.sampling == Sampling.balanced and self.class_weights:
            raise ConfigError("--sampling balanced already balances the classes; add --no-class-weights")


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


def make_criterion(config: TrainConfig, weights: torch.Tensor | None) -> nn.Module:
    if config.loss == Loss.focal:
        return FocalLoss(weights, config.focal_gamma)
    return nn.CrossEntropyLoss(weights, label_smoothing=config.label_smoothing)


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    if config.optimizer == Optimizer.sgd:
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.AdamW if config.optimizer == Optimizer.adamw else torch.optim.Adam
    return optimizer_class(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer, total_steps: int, warmup_steps: int = 0):
    """A linear warm-up over `warmup_steps`, then per-step cosine decay to 0 over the rest of the run, or a
    constant rate; all as LambdaLR, so resume is one path."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if config.scheduler == Scheduler.none:
            return 1.0
        progress = min(step - warmup_steps, total_steps - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def balanced_sampler(targets: np.ndarray, seed: int) -> torch.utils.data.WeightedRandomSampler:
    """Each class drawn equally often (with replacement), an epoch as long as the split."""
    counts = np.bincount(targets, minlength=int(targets.max()) + 1).astype(np.float64)
    weights = 1.0 / counts[targets]
    return torch.utils.data.WeightedRandomSampler(torch.from_numpy(weights), len(targets), replacement=True,
                                                  generator=torch.Generator().manual_seed(seed))


def make_loaders(config: TrainConfig, image_root: Path, labels, splits, preprocessing, dist: Distributed):
    """Training images shuffled (and, under torchrun, split across ranks by a DistributedSampler); the
    validation split cut into disjoint per-rank shards whose predictions are gathered."""
    train_set = IsicDataset(image_root, labels, splits["train"], preprocessing, train=True, seed=config.seed)
    sampler = None
    if dist.enabled:
        if config.sampling == Sampling.balanced:
            raise ConfigError("--sampling balanced runs in one process; under torchrun use --class-weights")
        sampler = torch.utils.data.DistributedSampler(train_set, dist.world_size, dist.rank, shuffle=True,
                                                      seed=config.seed)
    per_rank = len(sampler) if sampler is not None else len(train_set)
    draw = balanced_sampler(labels.targets[splits["train"]], config.seed) \
        if config.sampling == Sampling.balanced else sampler
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=draw is None, sampler=draw,
        num_workers=config.workers, collate_fn=collate_skipping,
        generator=torch.Generator().manual_seed(config.seed),
        drop_last=per_rank % config.batch_size == 1)  # a last batch of one image cannot train batch norm
    val_set = IsicDataset(image_root, labels, splits["val"][dist.rank::dist.world_size], preprocessing)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=config.batch_size, num_workers=config.workers,
                                             collate_fn=collate_skipping)
    return train_loader, val_loader, sampler


def shard_record(sampler, train_indices: np.ndarray, dist: Distributed) -> dict:
    """Which training images each rank sees this epoch: sizes, images seen twice (sampler padding only)
    and images no rank sees."""
    seen = dist.gather([int(train_indices[i]) for i in sampler])
    union = set().union(*map(set, seen))
    return {"world_size": dist.world_size, "images_per_rank": [len(s) for s in seen],
            "duplicated": sum(map(len, seen)) - len(union), "unseen": len(train_indices) - len(union)}


def train(config: TrainConfig, progress=None, found=None) -> dict:
    """Train and write `best.safetensors` and `last.safetensors` under `config.out`; return a summary.

    Under torchrun every rank trains its shard; only rank 0 writes checkpoints and the history.
    `progress(epoch, step, steps, loss)` is called after each step on rank 0, `found(text)` once the data is read
    (what was found: counts per class, absent classes, the split)."""
    dist = Distributed.from_environment()
    try:
        return _train(config, dist, progress if dist.is_main else None, found if dist.is_main else None)
    finally:
        dist.close()


def _train(config: TrainConfig, dist: Distributed, progress, found) -> dict:
    torch.manual_seed(config.seed)
    device = dist.device
    prepared = prepare_data(config.data, config.seed, config.skip_missing, config.layout)
    image_root, labels, splits, missing = prepared.image_root, prepared.labels, prepared.splits, prepared.missing
    if found is not None:
        found(prepared.describe())
    if len(splits["val"]) == 0:
        raise DatasetError(f"{config.data}: the validation split is empty ({len(labels.images)} labelled images); "
                           "training needs enough images per class for a 70/15/15 split")
    model = build_model(config.arch, len(CLASS_NAMES), config.dropout, config.pretrained)
    if config.init_weights:
        load_initial_weights(model, config.init_weights)
    if config.freeze_stages:
        model.freeze_stages(config.freeze_stages)
    data_record = prepared.record(config.seed)
    manifest = make_manifest(model, config.image_size, config.trained_on, split_seed=config.seed,
                             preprocessing=input_preprocessing(model, config.image_size),
                             initial_weights=model.initial_weights,
                             untrained_classes=untrained_classes(data_record),
                             extra={"train_config": asdict(config), "world_size": dist.world_size,
                                    "data": data_record})
    train_loader, val_loader, sampler = make_loaders(config, image_root, labels, splits, manifest.preprocessing,
                                                     dist)
    weights = torch.from_numpy(class_weights(labels.targets[splits["train"]])).to(device) \
        if config.class_weights else None
    criterion = make_criterion(config, weights).to(device)
    optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    scheduler = make_scheduler(config, optimizer, max(1, config.epochs * len(train_loader)),
                               round(config.warmup_epochs * len(train_loader)))
    averaged = make_average(model, config.ema_decay)
    state = {"epoch": 0, "best": -1.0, "since_best": 0, "history": [], "skipped_corrupt": 0}
    if config.resume:
        state = {"since_best": 0, **resume_from(config.resume, model, optimizer, scheduler)}
    trained = wrap_for_training(model.to(device), config, dist)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))
    out = Path(config.out)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    stopped_early = False
    for epoch in range(state["epoch"], config.epochs):
        entry = {"epoch": epoch + 1}
        if sampler is not None:
            sampler.set_epoch(epoch)
            entry["shards"] = shard_record(sampler, splits["train"], dist)
        def after_step(step: int, loss: float) -> None:
            if averaged is not None:
                averaged.update_parameters(model)
            if progress:
                progress(epoch, step, len(train_loader), loss)

        losses = train_one_epoch(trained, train_loader, criterion, optimizer, scheduler, scaler, device, state,
                                 after_step)
        evaluated = averaged.module if averaged is not None else model
        report = evaluate_sharded(evaluated, val_loader, device, manifest.class_names, dist)
        entry.update({"train_loss": dist.mean(losses), "val_accuracy": report["accuracy"],
                      "val_balanced_accuracy": report["balanced_accuracy"]})
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        improved = report["balanced_accuracy"] > state["best"]
        state["best"] = max(state["best"], report["balanced_accuracy"])
        state["since_best"] = 0 if improved else state["since_best"] + 1
        if dist.is_main:
            write_epoch_checkpoints(out, model, evaluated, manifest, entry, improved, optimizer, scheduler, state,
                                    config)
        if config.early_stopping is not None and state["since_best"] >= config.early_stopping:
            stopped_early = True
            break
    if dist.is_main:
        (out / "history.json").write_text(json.dumps(state["history"], indent=2))
    return {"history": state["history"], "best_val_balanced_accuracy": state["best"],
            "missing_images": len(missing), "skipped_corrupt": state["skipped_corrupt"], "out": str(out),
            "stopped_early": stopped_early, "rank": dist.rank, "world_size": dist.world_size}


def make_average(model: nn.Module, decay: float | None):
    """An exponential moving average of the weights and batch-norm statistics (evaluated and kept as best), or
    None. On --resume it restarts from the resumed weights."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def input_preprocessing(model, image_size: int) -> Preprocessing:
    """The input scaling the initial weights were measured to expect (packaged weights), else ImageNet's."""
    measured = model.initial_weights
    if "mean" in measured:
        return Preprocessing(image_size=image_size, mean=tuple(measured["mean"]), std=tuple(measured["std"]))
    return Preprocessing(image_size=image_size)


def wrap_for_training(model: nn.Module, config: TrainConfig, dist: Distributed) -> nn.Module:
    if config.sync_bn:
        if not dist.device.startswith("cuda"):
            raise ConfigError("--sync-bn synchronises batch statistics across GPU processes (NCCL); "
                              "it does not run on CPU: drop --sync-bn")
        from timm.layers import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    if not dist.enabled:
        return model
    device_ids = [torch.device(dist.device).index] if dist.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def train_one_epoch(model, loader, criterion, optimizer, scheduler, scaler, device: str, state: dict,
                    after_step) -> list[float]:
    model.train()
    losses = []
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for step, (images, targets, skipped) in enumerate(loader):
        state["skipped_corrupt"] += skipped
        if images is None:
            continue
        images, targets = images.to(device), targets.to(device)
        with torch.autocast(device_type=device_type, enabled=device_type == "cuda"):
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(loss.item())
        after_step(step + 1, losses[-1])
    return losses


def write_epoch_checkpoints(out: Path, model, evaluated, manifest, entry: dict, improved: bool, optimizer,
                            scheduler, state: dict, config: TrainConfig) -> None:
    """best and epoch_NNN hold the weights that were evaluated (the average, with --ema); last holds the
    trained weights and the optimizer, to resume from."""
    metrics = {k: v for k, v in entry.items() if isinstance(v, (int, float))}
    epoch_manifest = manifest.with_updates(metrics=metrics)
    if improved:
        save_checkpoint(out / "best.safetensors", evaluated, epoch_manifest)
    if config.save_every and entry["epoch"] % config.save_every == 0:
        save_checkpoint(out / f"epoch_{entry['epoch']:03d}.safetensors", evaluated, epoch_manifest)
    save_checkpoint(out / "last.safetensors", model, epoch_manifest, optimizer_tensors(optimizer),
                    train_state={**state, "optimizer": optimizer_meta(optimizer),
                                 "scheduler": scheduler.state_dict()})


@torch.no_grad()
def predict_loader(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probabilities, targets = [], []
    for images, labels, _ in loader:
        if images is None:
            continue
        probabilities.append(torch.softmax(model(images.to(device)).float(), dim=1).cpu().numpy())
        targets.append(labels.numpy())
    if not probabilities:
        return np.zeros((0, model.head.out_features), np.float32), np.zeros(0, np.int64)
    return np.concatenate(probabilities), np.concatenate(targets)


def evaluate_sharded(model, loader, device, class_names, dist: Distributed) -> dict:
    """Each rank predicts its shard; the report is computed from all shards together, on every rank."""
    shards = dist.gather(predict_loader(model, loader, device))
    probabilities = np.concatenate([p for p, _ in shards])
    targets = np.concatenate([t for _, t in shards])
    return classification_report(targets, probabilities, class_names)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for parameter_id, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            if value is not None:
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


if __name__ == "__main__":
    raise SystemExit("melanomanet.train is the trainer's library, not a command: train with `mnet train --data DIR "
                     "--out RUN` (see `mnet train --help`), or under torchrun with `python -m melanomanet.rank ARGS`")
