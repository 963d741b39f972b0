"""Plotly figures as plain dicts (data + layout), built from the run folder's JSON.

Plain dicts keep the page deterministic (the same folder gives the same bytes) and small;
plotly.js, inlined once, draws them. Each model keeps one colour across the page.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from visionbench import display

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
Figure = dict[str, Any]


def colours(models: list[str]) -> dict[str, str]:
    """One stable colour per model, in leaderboard order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(models)}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "margin": {"l": 55, "r": 20,
            "t": 40, "b": 45}, "height": 340, "legend": {"orientation": "h", "y": -0.2},
            **extra}


def metric_bars(rows: list[dict[str, Any]], metrics: list[str], colour: dict[str, str],
                confidence: float) -> Figure:
    """Grouped bars of headline metrics per model, with their bootstrap intervals."""
    data = []
    for row in rows:
        if "metrics" not in row:
            continue
        values = [row["metrics"].get(m, {}) for m in metrics]
        data.append({
            "type": "bar", "name": row["model"], "x": metrics,
            "y": [v.get("value") for v in values], "marker": {"color": colour[row["model"]]},
            "error_y": {"type": "data", "symmetric": False,
                        "array": [v["high"] - v["value"] if "high" in v else 0 for v in values],
                        "arrayminus": [v["value"] - v["low"] if "low" in v else 0
                                       for v in values]},
        })
    layout = _layout(f"Headline metrics on test (whiskers: {display.level(confidence)} "
                     "intervals)", barmode="group",
                     yaxis={"range": [0, 1.05]}, height=380)
    layout["margin"]["b"] = 95  # room for the slanted metric names
    layout["legend"]["y"] = -0.45
    return {"data": data, "layout": layout}


def accuracy_vs_time(rows: list[dict[str, Any]], metric: str, colour: dict[str, str]
                     ) -> Figure:
    """The primary metric against training seconds, one point per model."""
    data = [{
        "type": "scatter", "mode": "markers+text", "name": row["model"],
        "x": [row.get("train_seconds") or 0], "y": [row["metrics"][metric]["value"]],
        "text": [row["model"]], "textposition": "top center",
        "marker": {"size": 12, "color": colour[row["model"]]},
    } for row in rows if "metrics" in row and metric in row["metrics"]]
    return {"data": data, "layout": _layout(f"{metric} vs training time",
                                            xaxis={"title": {"text": "training seconds"}},
                                            yaxis={"title": {"text": metric}},
                                            showlegend=False)}


def significance_matrix(comparison: dict[str, Any], models: list[str]) -> Figure:
    """Pairwise p-values of the primary metric's paired bootstrap (McNemar without it)."""
    metric = comparison["primary_metric"]
    index = {m: i for i, m in enumerate(models)}
    values: list[list[float | None]] = [[None] * len(models) for _ in models]
    for pair in comparison["pairs"]:
        if pair["a"] not in index or pair["b"] not in index:
            continue
        tested = pair.get("bootstrap", {}).get(metric) or pair["mcnemar"]
        a, b = index[pair["a"]], index[pair["b"]]
        values[a][b] = values[b][a] = round(tested["p_value"], 4)
    return {"data": [{"type": "heatmap", "z": values, "x": models, "y": models,
                      "zmin": 0, "zmax": 0.2, "colorscale": "RdBu", "texttemplate": "%{z}",
                      "xgap": 2, "ygap": 2,
                      "colorbar": {"title": {"text": "p"}}}],
            "layout": _layout(f"Pairwise p-values ({metric}; < {comparison['alpha']} = "
                              "significant)", yaxis={"autorange": "reversed"})}


def training_curves(history: dict[str, Any], colour: str) -> list[Figure]:
    """Loss and accuracy per epoch, train vs validation, with stages, early stopping and
    learning-rate reductions marked."""
    epochs = history["epochs"]
    x = [row["epoch"] for row in epochs]
    shapes, notes = [], []
    for previous, row in pairwise(epochs):
        if row["stage"] != previous["stage"]:
            shapes.append({"type": "line", "x0": row["epoch"] - 0.5, "x1": row["epoch"] - 0.5,
                           "y0": 0, "y1": 1, "yref": "paper", "line": {"dash": "dot"}})
            notes.append({"x": row["epoch"] - 0.5, "y": 1, "yref": "paper",
                          "text": f"stage {row['stage']}", "showarrow": False})
    for event in history.get("events", []):
        if event["event"] == "early_stopping" and event.get("best_epoch"):
            shapes.append({"type": "line", "x0": event["best_epoch"], "x1": event["best_epoch"],
                           "y0": 0, "y1": 1, "yref": "paper",
                           "line": {"color": "green", "dash": "dash"}})
            notes.append({"x": event["best_epoch"], "y": 0.92, "yref": "paper",
                          "text": "best (restored)" if event.get("restored") else "best",
                          "showarrow": False, "font": {"color": "green"}})
        if event["event"] == "lr_reduced":
            notes.append({"x": event["epoch"], "y": 0.05, "yref": "paper",
                          "text": f"lr → {event['lr']:.0e}", "showarrow": True, "ay": -25})
    figures = []
    for key, label in (("loss", "Loss"), ("accuracy", "Accuracy")):
        data = [{"type": "scatter", "mode": "lines+markers", "name": "train", "x": x,
                 "y": [r[f"train_{key}"] for r in epochs],
                 "line": {"color": colour, "dash": "dot"}}]
        if any(r[f"val_{key}"] is not None for r in epochs):
            data.append({"type": "scatter", "mode": "lines+markers", "name": "validation",
                         "x": x, "y": [r[f"val_{key}"] for r in epochs],
                         "line": {"color": colour}})
        figures.append({"data": data, "layout": _layout(
            f"{label} per epoch", shapes=shapes, annotations=notes,
            xaxis={"title": {"text": "epoch"}})})
    return figures


def confusion(evaluation: dict[str, Any], classes: list[str], normalized: bool) -> Figure:
    """Confusion matrix heat map (rows: true class)."""
    key = "normalized" if normalized else "counts"
    z = evaluation["confusion"][key]
    return {"data": [{"type": "heatmap", "z": z, "x": classes, "y": classes,
                      "colorscale": "Blues", "reversescale": True,
                      "texttemplate": "%{z:.2f}" if normalized else "%{z}",
                      "showscale": False}],
            "layout": _layout("Confusion matrix" + (" (row-normalised)" if normalized
                                                    else " (counts)"),
                              xaxis={"title": {"text": "predicted"}, "type": "category"},
                              yaxis={"title": {"text": "true"}, "autorange": "reversed",
                                     "type": "category"})}


def curves(evaluation: dict[str, Any], kind: str) -> Figure:
    """ROC (kind 'roc') or precision-recall (kind 'pr') curves, one per class."""
    data = []
    per_class = evaluation["per_class"]
    for name, points in evaluation[kind].items():
        if kind == "roc":
            label = f"{name} (AUC {per_class[name].get('auc', float('nan')):.3f})"
            data.append({"type": "scatter", "mode": "lines", "name": label,
                         "x": points["fpr"], "y": points["tpr"]})
        else:
            label = f"{name} (AP {per_class[name].get('average_precision', float('nan')):.3f})"
            data.append({"type": "scatter", "mode": "lines", "name": label,
                         "x": points["recall"], "y": points["precision"]})
    if kind == "roc":
        data.append({"type": "scatter", "mode": "lines", "name": "chance", "x": [0, 1],
                     "y": [0, 1], "line": {"dash": "dot", "color": "#999"}})
        axes = ("false positive rate", "true positive rate (sensitivity)")
    else:
        axes = ("recall", "precision")
    return {"data": data, "layout": _layout(
        "ROC curves (one-vs-rest)" if kind == "roc" else "Precision-recall curves",
        xaxis={"title": {"text": axes[0]}}, yaxis={"title": {"text": axes[1]}})}


def reliability(evaluation: dict[str, Any], colour: str) -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    bins = evaluation["calibration"]["bins"]
    return {"data": [
        {"type": "scatter", "mode": "lines+markers", "name": "model",
         "x": [b["confidence"] for b in bins], "y": [b["accuracy"] for b in bins],
         "text": [f"{b['count']} images" for b in bins], "line": {"color": colour}},
        {"type": "scatter", "mode": "lines", "name": "perfect", "x": [0, 1], "y": [0, 1],
         "line": {"dash": "dot", "color": "#999"}},
    ], "layout": _layout("Reliability diagram", xaxis={"title": {"text": "confidence"}},
                         yaxis={"title": {"text": "accuracy"}})}


def robustness(found: dict[str, Any], colour: str) -> Figure:
    """Accuracy per corruption against severity, with the clean accuracy as a line."""
    data = []
    for name, rows in found["corruptions"].items():
        data.append({"type": "scatter", "mode": "lines+markers", "name": name,
                     "x": list(range(1, len(rows) + 1)), "y": [r["accuracy"] for r in rows],
                     "text": [f"{name} {r['severity']}" for r in rows],
                     "hovertemplate": "%{text}: %{y:.3f}"})
    clean = found["clean_accuracy"]
    return {"data": data, "layout": _layout(
        f"Robustness (clean accuracy {clean:.3f}, dotted)",
        xaxis={"title": {"text": "severity level, as listed in evaluate.robustness"},
               "dtick": 1},
        yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]},
        shapes=[{"type": "line", "x0": 0, "x1": 1, "xref": "paper", "y0": clean, "y1": clean,
                 "line": {"dash": "dot", "color": colour}}])}
