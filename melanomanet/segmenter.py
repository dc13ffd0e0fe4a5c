"""The lesion segmenter the ABCD analysis starts from: a small U-Net (0.39 M parameters, 128 x 96 input) trained
on HAM10000's 10,015 published lesion masks (Tschandl et al. 2020), then, given clinical photos with masks
(PAD-UFES-20), fine-tuned on them with HAM10000 replayed beside; exported to ONNX with its sidecar record.

It decides what is lesion and what is skin where colour thresholds cannot: a light-brown periphery or regression
beside a dark core, a lesion filling the field, the dark vignette of a dermatoscope, the skin around a lesion in a
smartphone photo. The outline is then cut at full resolution by `runtime.abcde` (the runtime never imports torch).
PH2 and ISIC 2017 are never trained on, so they measure it on lesions it never saw; the clinical photos are
measured by patient-grouped cross-validation (`clinical_folds`: one fine-tuned model per fold, each kept from that
fold's photos), read by `studies/abcd_agreement.py --segmenter-folds`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from melanomanet.data.ham10000 import METADATA, read_metadata
from melanomanet.data.labels import image_files
from melanomanet.data.pad_ufes import is_pad_ufes, read_pad_ufes
from runtime.abcde.segmenter import INPUT_SIZE, MEAN, STD
from runtime.errors import DatasetError
from runtime.manifest import sha256_file

WIDTHS = (8, 16, 32, 64, 96)
BATCH = 32
FINE_TUNE_RATE = 1e-3
CLINICAL_FOLDS = 5
MASK_FOLDERS = ("masks", "HAM10000_segmentations_lesion_tschandl")


def build_unet():
    import torch
    import torch.nn.functional as functional
    from torch import nn

    def block(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs),
                             nn.ReLU(inplace=True), nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
                             nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList([block(3 if i == 0 else WIDTHS[i - 1], WIDTHS[i]) for i in range(len(WIDTHS))])
            self.up = nn.ModuleList([block(WIDTHS[i] + WIDTHS[i + 1], WIDTHS[i])
                                     for i in reversed(range(len(WIDTHS) - 1))])
            self.head = nn.Conv2d(WIDTHS[0], 1, 1)

        def forward(self, x):
            skips = []
            for index, down in enumerate(self.down):
                x = down(x if index == 0 else functional.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for up in self.up:
                skip = skips.pop()
                x = up(torch.cat([functional.interpolate(x, size=skip.shape[-2:], mode="bilinear",
                                                         align_corners=False), skip], 1))
            return self.head(x)

    return UNet()


def load_ham10000_masks(root: Path, progress: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every HAM10000 image and its lesion mask at the segmenter's input size (uint8 N x H x W x 3, N x H x W)."""
    root = Path(root)
    if not (root / METADATA).is_file():
        raise DatasetError(f"{root}: no {METADATA}; point at the HAM10000 folder (images/ and masks/ beside it)")
    images = image_files(root / "images", root / "HAM10000_images_part_1", root / "HAM10000_images_part_2")
    masks = {path.stem.removesuffix("_segmentation"): path
             for path in image_files(*(root / folder for folder in MASK_FOLDERS)).values()}
    rows = [row for row in read_metadata(root) if row["image_id"] in images and row["image_id"] in masks]
    if not rows:
        raise DatasetError(f"{root}: no image has a lesion mask (<id>_segmentation.png in {' or '.join(MASK_FOLDERS)})")
    width, height = INPUT_SIZE
    pictures = np.zeros((len(rows), height, width, 3), np.uint8)
    truths = np.zeros((len(rows), height, width), np.uint8)
    for index, row in enumerate(rows):
        rgb = cv2.imread(str(images[row["image_id"]]), cv2.IMREAD_COLOR)[..., ::-1]
        mask = cv2.imread(str(masks[row["image_id"]]), cv2.IMREAD_GRAYSCALE)
        pictures[index] = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        truths[index] = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA) > 127
        if progress is not None:
            progress()
    return pictures, truths


def load_clinical_masks(root: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """PAD-UFES-20's photos that have a lesion mask (masks/<id>_mask.png) at the segmenter's input size, turned
    landscape as the runtime turns them; with their names and patients."""
    root = Path(root)
    if not is_pad_ufes(root):
        raise DatasetError(f"{root}: not a PAD-UFES-20 folder (metadata.csv with img_id and diagnostic, images/ "
                           "and masks/ beside it)")
    release = read_pad_ufes(root)
    masks = {path.stem.removesuffix("_mask"): path for path in image_files(root / "masks").values()}
    chosen = [(name, group) for name, group in zip(release.labels.images, release.groups)
              if name in release.files and name in masks]
    if not chosen:
        raise DatasetError(f"{root}: no photo has a lesion mask (masks/<id>_mask.png)")
    width, height = INPUT_SIZE
    pictures = np.zeros((len(chosen), height, width, 3), np.uint8)
    truths = np.zeros((len(chosen), height, width), np.uint8)
    for index, (name, _) in enumerate(chosen):
        bgr = cv2.imread(str(release.files[name]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(masks[name]), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None:
            raise DatasetError(f"{release.files[name]} or its mask {masks[name]} cannot be read; restore the file "
                               "or remove the pair")
        rgb = bgr[..., ::-1]
        mask = cv2.resize(mask, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if rgb.shape[0] > rgb.shape[1]:
            rgb, mask = np.rot90(rgb), np.rot90(mask)
        pictures[index] = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)
        truths[index] = cv2.resize(np.ascontiguousarray(mask), (width, height), interpolation=cv2.INTER_AREA) > 127
    return pictures, truths, [name for name, _ in chosen], [str(group) for _, group in chosen]


def clinical_folds(patients: list[str], folds: int = CLINICAL_FOLDS, seed: int = 0) -> np.ndarray:
    """The cross-validation fold of each photo: patients shuffled (seeded) and dealt round, so no patient's
    photos fall in two folds."""
    order = sorted(set(patients))
    np.random.default_rng(seed).shuffle(order)
    fold_of = {patient: index % folds for index, patient in enumerate(order)}
    return np.array([fold_of[patient] for patient in patients])


def augment(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zoom (0.75-1.6x), small rotations and shifts, flips, colour gain and offset, a dermatoscope's dark circular
    vignette and blur: the looks of other dermatoscopes (PH2's, ISIC's) that HAM10000 shows seldom."""
    count, height, width = masks.shape
    out_images, out_masks = np.empty_like(images), np.empty_like(masks)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        scale = np.exp(rng.uniform(np.log(0.75), np.log(1.6)))
        angle = rng.uniform(-20, 20) if rng.random() < 0.5 else 0.0
        centre = (width / 2 + rng.uniform(-0.1, 0.1) * width, height / 2 + rng.uniform(-0.1, 0.1) * height)
        warp = cv2.getRotationMatrix2D(centre, angle, scale)
        image = cv2.warpAffine(images[index], warp, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(masks[index], warp, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REFLECT)
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        image = image.astype(np.float32) * rng.uniform(0.75, 1.25, 3).astype(np.float32) * rng.uniform(0.8, 1.2)
        image += rng.uniform(-20, 20)
        if rng.random() < 0.4:
            radius = rng.uniform(0.45, 0.75) * width
            middle = (width / 2 + rng.uniform(-0.08, 0.08) * width, height / 2 + rng.uniform(-0.08, 0.08) * height)
            distance = np.hypot(columns - middle[0], rows - middle[1])
            image *= np.clip(1 - (distance - radius) / rng.uniform(3, 15), 0.03, 1)[..., None]
        if rng.random() < 0.2:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.5))
        out_images[index], out_masks[index] = np.clip(image, 0, 255).astype(np.uint8), mask
    return out_images, out_masks


def to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(((images.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def train_segmenter(images: np.ndarray, masks: np.ndarray, epochs: int, seed: int = 0,
                    progress: Callable[[int, float], None] | None = None):
    """Binary cross-entropy plus soft Dice, AdamW with a one-cycle schedule, batches of 32."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet()
    optimiser = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    steps = len(images) // BATCH
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=epochs * steps)
    for epoch in range(epochs):
        model.train()
        order, total = rng.permutation(len(images)), 0.0
        for step in range(steps):
            chosen = np.sort(order[step * BATCH:(step + 1) * BATCH])
            total += take_step(model, optimiser, *augment(images[chosen], masks[chosen], rng))
            schedule.step()
        if progress is not None:
            progress(epoch, total / steps)
    return model.eval()


def fine_tune(model, images: np.ndarray, masks: np.ndarray, replay_images: np.ndarray, replay_masks: np.ndarray,
              steps: int, seed: int = 0, progress: Callable[[], None] | None = None):
    """Fine-tune a copy of `model`: each batch half `images` (clinical photos), half `replay_images` (HAM10000,
    so dermoscopy is not forgotten), augmented as in training; AdamW, one-cycle to FINE_TUNE_RATE."""
    import copy

    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tuned = copy.deepcopy(model)
    optimiser = torch.optim.AdamW(tuned.parameters(), FINE_TUNE_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, FINE_TUNE_RATE, total_steps=steps, pct_start=0.1)
    tuned.train()
    for _ in range(steps):
        own, replayed = rng.choice(len(images), BATCH // 2), rng.choice(len(replay_images), BATCH // 2)
        batch_images, batch_masks = augment(np.concatenate([images[own], replay_images[replayed]]),
                                            np.concatenate([masks[own], replay_masks[replayed]]), rng)
        take_step(tuned, optimiser, batch_images, batch_masks)
        schedule.step()
        if progress is not None:
            progress()
    return tuned.eval()


def fine_tune_clinical(model, photos: tuple, replay: tuple[np.ndarray, np.ndarray], steps: int, seed: int,
                       folds_dir: Path, out: Path, provenance: dict,
                       progress: Callable[[], None] | None = None) -> dict:
    """`photos` as `load_clinical_masks` returns them: first one model per patient fold, fine-tuned without that
    fold's photos and written to `folds_dir/fold<k>.onnx` (its record names the photos held out), then the model
    fine-tuned on every photo, written to `out`; its record."""
    images, masks, names, patients = photos
    folds = clinical_folds(patients)
    provenance = {**provenance, "fine_tuned_on": f"{len(names)} clinical photos with lesion masks (PAD-UFES-20, "
                                                 f"Pacheco et al. 2020), {steps} steps, HAM10000 replayed"}
    for fold in range(CLINICAL_FOLDS):
        kept = folds != fold
        tuned = fine_tune(model, images[kept], masks[kept], *replay, steps, seed + fold + 1, progress)
        export_segmenter(tuned, Path(folds_dir) / f"fold{fold}.onnx",
                         {**provenance, "fold": fold, "held_out": [n for n, f in zip(names, folds) if f == fold]})
    tuned = fine_tune(model, images, masks, *replay, steps, seed, progress)
    return export_segmenter(tuned, out, {**provenance, "cross_validation_models": str(folds_dir)})


def take_step(model, optimiser, images: np.ndarray, masks: np.ndarray) -> float:
    """One optimiser step on binary cross-entropy plus soft Dice; the loss."""
    import torch
    import torch.nn.functional as functional

    logits = model(to_tensor(images))[:, 0]
    truth = torch.from_numpy(masks.astype(np.float32))
    probability = torch.sigmoid(logits)
    dice = 1 - (2 * (probability * truth).sum((1, 2)) + 1) / (probability.sum((1, 2)) + truth.sum((1, 2)) + 1)
    loss = functional.binary_cross_entropy_with_logits(logits, truth) + dice.mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def export_segmenter(model, out: Path, provenance: dict) -> dict:
    """ONNX (opset 17, fixed 1 x 3 x 96 x 128 input `image`, output `probability`) and its sidecar record:
    the file's sha256, which the runtime checks before loading it."""
    import torch

    width, height = INPUT_SIZE
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    class WithSigmoid(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return torch.sigmoid(self.inner(image))

    torch.onnx.export(WithSigmoid(model).eval(), torch.zeros(1, 3, height, width), str(out), input_names=["image"],
                      output_names=["probability"], opset_version=17, dynamo=False)
    record = {"sha256": sha256_file(out), "input_size": list(INPUT_SIZE), "mean": MEAN.tolist(), "std": STD.tolist(),
              "created": time.strftime("%Y-%m-%d"), **provenance}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record
