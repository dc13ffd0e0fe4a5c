"""Evaluation figures as PNG files: the confusion matrix and one ROC curve per class (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(matrix: np.ndarray, class_names, path: str | Path, title: str) -> Path:
    """Counts, with each row's share of its true class as the colour (so rare classes read as well)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[row, column] > 0.5 else "black")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of the true class")
    return _save(figure, path)


def roc_png(targets: np.ndarray, probabilities: np.ndarray, class_names, aucs: dict, path: str | Path,
            title: str) -> Path:
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 6.5), dpi=120)
    for k, name in enumerate(class_names):
        if aucs.get(name) is None:
            continue
        false_positive, true_positive, _ = roc_curve(targets == k, probabilities[:, k])
        axes.plot(false_positive, true_positive, linewidth=1.4, label=f"{name}  AUC {aucs[name]:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path)
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def reliability_png(tables: dict[str, dict], figures: dict[str, dict], path: str | Path, title: str) -> Path:
    """Accuracy against confidence per bin, one panel per labelled set of probabilities (before/after)."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 5), dpi=120, squeeze=False)
    for axes, (name, table) in zip(panels[0], tables.items()):
        bins = len(table["counts"])
        centres = (np.arange(bins) + 0.5) / bins
        filled = table["counts"] > 0
        axes.bar(centres[filled], table["accuracy"][filled], width=1 / bins, edgecolor="#1f4e79", color="#7fb3e0",
                 label="accuracy in bin")
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        axes.plot(centres[filled], table["confidence"][filled], "o", color="#c0392b", markersize=3,
                  label="mean confidence in bin")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("confidence (largest probability)")
        axes.set_ylabel("accuracy")
        stats = figures[name]
        axes.set_title(f"{name}: ECE {stats['ece']:.3f}, NLL {stats['nll']:.3f}")
        axes.legend(loc="upper left", fontsize=8)
    figure.suptitle(title)
    return _save(figure, path)


def risk_coverage_png(curves: dict, path: str | Path, title: str) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    for name, curve in curves.items():
        rates = [row["referral_rate"] * 100 for row in curve["rows"]]
        axes.plot(rates, [row["balanced_accuracy"] for row in curve["rows"]], marker="o", markersize=3,
                  label=f"{name} (AURC {curve['aurc']:.3f})")
    axes.set_xlabel("most uncertain images referred (%)")
    axes.set_ylabel("balanced accuracy of the images kept")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def training_curves_png(history: list[dict], path: str | Path) -> Path:
    """Training loss and validation (balanced) accuracy per epoch, from a run's history.json."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    epochs = [row["epoch"] for row in history]
    axes[0].plot(epochs, [row["train_loss"] for row in history], marker="o", markersize=3)
    axes[0].set(xlabel="epoch", ylabel="training loss")
    axes[1].plot(epochs, [row["val_balanced_accuracy"] for row in history], marker="o", markersize=3,
                 label="balanced accuracy")
    axes[1].plot(epochs, [row["val_accuracy"] for row in history], marker="o", markersize=3, label="accuracy")
    axes[1].set(xlabel="epoch", ylabel="validation split")
    axes[1].legend()
    for axis in axes:
        axis.grid(alpha=0.3)
    return _save(figure, path)
