"""Error analysis pictures: misclassified examples, top losses, error rate per class.

The numbers behind them (most-confused pairs, per-class recall) are in
`evaluation.json`; these need the test images, so they are drawn when the model is
evaluated on its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visionbench.fileio import atomic_path
from visionbench.pictures import contact_sheet, save_png, tile
from visionbench.rundir.documents import ErrorAnalysis, TopLoss
from visionbench.rundir.layout import ModelFolder
from visionbench.rundir.predictions import Predictions

# Pixels on the longer side of each image of a grid.
GRID_TILE = 160


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported late: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_grid(images: np.ndarray, titles: list[str], path: Path, heading: str) -> None:
    """uint8 (N, H, W, C) images in a grid of five columns, each under its title, under
    `heading`, written atomically to `path` (PNG)."""
    save_png(contact_sheet([tile(image, GRID_TILE) for image in images], titles,
                           columns=min(5, max(len(images), 1)), heading=heading), path)


def error_analysis(images: np.ndarray, test: Predictions, classes: list[str],
                   folder: ModelFolder, examples: int) -> ErrorAnalysis:
    """Draw the misclassified, top-loss and error-rate pictures into the model folder;
    return the error rates and the top losses."""
    y_pred = test.y_pred
    true_prob = test.prob[np.arange(len(test.y_true)), test.y_true]
    losses = -np.log(np.clip(true_prob, 1e-15, 1.0))
    wrong = np.flatnonzero(y_pred != test.y_true)
    # The most confident mistakes first: those are the ones a user should look at.
    wrong = wrong[np.argsort(-test.prob[wrong, y_pred[wrong]])][:examples]

    def title(i: int) -> str:
        return (f"true {classes[test.y_true[i]]}\npred {classes[y_pred[i]]} "
                f"({test.prob[i, y_pred[i]]:.2f})")

    written = []
    if examples and len(wrong):
        draw_grid(images[wrong], [title(i) for i in wrong], folder.picture("misclassified"),
              f"{len(np.flatnonzero(y_pred != test.y_true))} misclassified test images "
              f"(most confident first)")
        written.append(folder.picture("misclassified").name)
    top = np.argsort(-losses)[: max(examples, 0)]
    if examples and len(top):
        draw_grid(images[top], [f"{title(i)}\nloss {losses[i]:.2f}" for i in top],
              folder.picture("top_losses"), "highest-loss test images")
        written.append(folder.picture("top_losses").name)
    errors = [float(np.mean(y_pred[test.y_true == k] != k)) if (test.y_true == k).any()
              else 0.0 for k in range(len(classes))]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(4, 0.6 * len(classes) + 2), 3))
    axis.bar(range(len(classes)), errors, color="#c0504d")
    crowded = sum(len(c) for c in classes) > 40
    axis.set_xticks(range(len(classes)), classes, rotation=30 if crowded else 0,
                    ha="right" if crowded else "center")
    axis.set_ylabel("error rate")
    axis.set_title("test error rate per class")
    figure.tight_layout()
    with atomic_path(folder.picture("error_rate")) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    written.append(folder.picture("error_rate").name)
    return ErrorAnalysis(
        files=written,
        error_rate=dict(zip(classes, errors, strict=True)),
        top_losses=[TopLoss(id=test.ids[i], true=classes[test.y_true[i]],
                            predicted=classes[y_pred[i]],
                            confidence=float(test.prob[i, y_pred[i]]), loss=float(losses[i]))
                    for i in top],
    )
