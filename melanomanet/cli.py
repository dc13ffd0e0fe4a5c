"""`mnet`: synth, train, eval (PyTorch) and run, abcde (torch-free runtime). Commands stay thin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from runtime.cli import register as register_runtime_commands
from runtime.errors import MnetError

app = typer.Typer(help="MelanomaNet Edge: synthesize data, train, evaluate, and run explained predictions.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

ARCH_HELP = "Backbone: tf_efficientnetv2_b0/s/m/l (timm) or efficientnet_v2_s/m/l (torchvision, reference layout)."


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (ISIC 2019 layout: images + GroundTruth CSV + truth/).")],
    count: Annotated[int, typer.Option(help="Number of lesion images.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed draws the same images.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    hairs: Annotated[bool, typer.Option(help="Draw hairs over some lesions.")] = True,
):
    """Draw synthetic dermoscopy-like lesions with known truth, in the ISIC 2019 layout."""
    from melanomanet.data.synth import write_dataset

    with progress_bar() as bar:
        task = bar.add_task("synthesizing", total=count, status="")
        csv_path = write_dataset(out, count, seed, size, hairs, progress=lambda: bar.advance(task))
    console.print(f"wrote {count} images and {csv_path.name} to {out} (synthetic, for demos and tests only)")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="ISIC-layout folder: images beside ISIC_2019_Training_GroundTruth.csv.")],
    out: Annotated[Path, typer.Option(help="Folder for best.safetensors, last.safetensors and history.json.")],
    arch: Annotated[str, typer.Option(help=ARCH_HELP)] = "tf_efficientnetv2_b0",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    image_size: Annotated[int, typer.Option(help="Square input size in pixels (paper: 384).")] = 224,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine schedule).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for the split, initialisation and augmentation.")] = 0,
    loss: Annotated[str, typer.Option(help="'ce' (class-weighted cross-entropy) or 'focal'.")] = "ce",
    optimizer: Annotated[str, typer.Option(help="'adamw' or 'adam'.")] = "adamw",
    dropout: Annotated[float, typer.Option(help="Dropout before the classifier (MC dropout uses it).")] = 0.3,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Train on the images present when some are missing.")] = False,
    init_weights: Annotated[Optional[Path], typer.Option(help="Local weights to start from (no download).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a run's last.safetensors.")] = None,
    trained_on: Annotated[Optional[str], typer.Option(help="Provenance recorded in the manifest; "
                                                      "'synthetic' is detected from the data.")] = None,
):
    """Train MelanomaNet on an ISIC 2019 style folder."""
    from melanomanet.train import TrainConfig
    from melanomanet.train import train as run_training

    provenance = trained_on or ("synthetic" if (data / "truth").is_dir() else "unknown")
    config = TrainConfig(data=str(data), out=str(out), arch=arch, epochs=epochs, image_size=image_size,
                         batch_size=batch_size, lr=lr, seed=seed, loss=loss, optimizer=optimizer, dropout=dropout,
                         workers=workers, skip_missing=skip_missing,
                         init_weights=str(init_weights) if init_weights else None,
                         resume=str(resume) if resume else None, trained_on=provenance)
    with progress_bar() as bar:
        task = bar.add_task("training", total=None, status="")

        def advance(epoch: int, loss_value: float):
            bar.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs}", status=f"loss {loss_value:.3f}")

        summary = guarded(lambda: run_training(config, progress=advance))
    table = Table("epoch", "train loss", "val acc", "val balanced acc", title=f"{arch} @ {image_size}px")
    for row in summary["history"]:
        table.add_row(str(row["epoch"]), f"{row['train_loss']:.4f}" if row["train_loss"] is not None else "-",
                      f"{row['val_accuracy']:.3f}", f"{row['val_balanced_accuracy']:.3f}")
    Console().print(table)
    for key in ("missing_images", "skipped_corrupt"):
        if summary[key]:
            console.print(f"[yellow]{key.replace('_', ' ')}: {summary[key]}[/yellow]")
    console.print(f"checkpoints in {out}")


@app.command("eval")
def evaluate_command(
    data: Annotated[Path, typer.Option(help="ISIC-layout folder the checkpoint was trained on.")],
    checkpoint: Annotated[Path, typer.Option(help="A .safetensors checkpoint from `mnet train`.")],
    split: Annotated[str, typer.Option(help="train, val or test (the training run's seeded split).")] = "test",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every figure to this JSON file.")] = None,
    skip_missing: Annotated[bool, typer.Option(help="Evaluate on the images present when some are missing.")] = False,
):
    """Evaluate a checkpoint: accuracy, balanced accuracy, F1, AUC, per-class sensitivity and specificity."""
    from melanomanet.evaluate import evaluate

    report = guarded(lambda: evaluate(str(data), str(checkpoint), split, skip_missing=skip_missing))
    table = Table("class", "support", "sensitivity", "specificity", "AUC",
                  title=f"{split}: accuracy {report['accuracy']:.3f} · balanced {report['balanced_accuracy']:.3f}"
                        f" · F1w {report['f1_weighted']:.3f} · AUC {report['auc']:.3f}")
    for name, row in report["per_class"].items():
        if row["support"]:
            table.add_row(name, str(row["support"]), f"{row['sensitivity']:.3f}", f"{row['specificity']:.3f}",
                          f"{row['auc']:.3f}" if row["auc"] is not None else "-")
    Console().print(table)
    if report["trained_on"] == "synthetic":
        console.print("[yellow]demo weights trained on synthetic lesions: these figures say nothing about "
                      "real skin lesions[/yellow]")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


def guarded(action):
    """Run a library call; a user-fixable problem becomes one red line and exit code 1."""
    try:
        return action()
    except MnetError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None


register_runtime_commands(app)

concepts_app = typer.Typer(help="FastCAV concept explanations: concept image sets and vectors.", no_args_is_help=True)
app.add_typer(concepts_app, name="concepts")


@concepts_app.command("synth")
def concepts_synth(
    out: Annotated[Path, typer.Argument(help="Folder for <concept>/positive and <concept>/negative images.")],
    count: Annotated[int, typer.Option(help="Images per concept and polarity.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
):
    """Draw concept sets with known truth: asymmetry, irregular_border, multicolor, large_diameter."""
    from melanomanet.concepts import CONCEPTS, write_concept_sets

    with progress_bar() as bar:
        task = bar.add_task("drawing concepts", total=count * 2 * len(CONCEPTS), status="")
        write_concept_sets(out, count, seed, size, progress=lambda: bar.advance(task))
    console.print(f"wrote {count} positive and {count} negative images for each of {', '.join(CONCEPTS)} to {out}")


@concepts_app.command("train")
def concepts_train(
    checkpoint: Annotated[Path, typer.Option(help="The .safetensors checkpoint whose embedding is explained.")],
    concepts: Annotated[Path, typer.Option(help="Folder of <concept>/positive and <concept>/negative images.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The CAV file to write.")] = Path("cavs.safetensors"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write accuracies and timings here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    image_size: Annotated[Optional[int], typer.Option(
        help="Input size of the embeddings: the size you export the bundle at (default: the checkpoint's).")] = None,
):
    """FastCAV vectors (closed form) with held-out accuracy, beside the reference's SGD-CAV and a linear probe."""
    from melanomanet.concepts import save_cavs, train_cavs

    with console.status("embedding concept images"):
        tensors, report = guarded(lambda: train_cavs(checkpoint, concepts, seed, image_size))
    save_cavs(out, tensors, report)
    table = Table("concept", "FastCAV", "SGD-CAV", "cosine", "speed-up", "probe", title="held-out accuracy",
                  caption="cosine: FastCAV vs SGD-CAV vector; probe: a shrinkage LDA, is the concept "
                          "linearly encoded at all (high probe, low FastCAV: the embedding is far from isotropic)")
    for name, row in report["concepts"].items():
        table.add_row(name, f"{row['fastcav_accuracy']:.3f}", f"{row['sgdcav_accuracy']:.3f}",
                      f"{row['cosine_fast_vs_sgd']:.3f}", f"{row['speedup']:.0f}x", f"{row['probe_accuracy']:.3f}")
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    if report["image_size"] != report["checkpoint_image_size"]:
        console.print(f"[yellow]note:[/yellow] the checkpoint was trained at {report['checkpoint_image_size']} px; "
                      f"at {report['image_size']} px its lesions appear at a scale it did not learn, and shape "
                      "concepts (asymmetry) can score lower than at the training size (README, FastCAV)")
    console.print(f"wrote {out} ({report['image_size']} px embeddings); carry it into a bundle with "
                  f"`mnet-export onnx CKPT --image-size {report['image_size']} --cavs {out}`")
