"""Plotly figures as plain dicts (data + layout), built from the run folder's JSON.

Plain dicts keep the page deterministic (the same folder gives the same bytes) and small;
plotly.js, inlined once, draws them. Each model keeps one colour across the page.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

from visionbench import display
from visionbench.rundir.documents import (
    Comparison,
    EvaluationDocument,
    History,
    Interval,
    LeaderboardRow,
    Robustness,
    SweepTrial,
)

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
Figure = dict[str, Any]


def colours(models: list[str]) -> dict[str, str]:
    """One stable colour per model, in leaderboard order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(models)}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    """A figure's layout: margins that grow to fit tick labels and axis titles (automargin),
    and the legend in plotly's own place, right of the plot, which pushes the margin too, so
    no label, title or legend entry is clipped or drawn over another."""
    layout = {"title": {"text": title, "font": {"size": 14}},
              "margin": {"l": 55, "r": 20, "t": 40, "b": 45}, "height": 340, **extra}
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {"automargin": True, **layout.get(axis, {})}
    return layout


def metric_bars(rows: list[LeaderboardRow], metrics: list[str], colour: dict[str, str],
                confidence: float) -> Figure:
    """Grouped bars of headline metrics per model, with their bootstrap intervals."""
    data = []
    for row in rows:
        if not row.metrics:
            continue
        values = [row.metrics.get(m) or Interval(value=None) for m in metrics]
        data.append({
            "type": "bar", "name": row.model, "x": metrics,
            "y": [v.value for v in values], "marker": {"color": colour[row.model]},
            "error_y": {"type": "data", "symmetric": False,
                        "array": [v.high - v.value if v.high is not None else 0
                                  for v in values],
                        "arrayminus": [v.value - v.low if v.low is not None else 0
                                       for v in values]},
        })
    layout = _layout(f"Headline metrics on test (whiskers: {display.level(confidence)} "
                     "intervals)", barmode="group", yaxis={"range": [0, 1.05]}, height=380)
    return {"data": data, "layout": layout}


def accuracy_vs_time(rows: list[LeaderboardRow], metric: str, colour: dict[str, str],
                     bounds: tuple[float, float] = (-math.inf, math.inf)) -> Figure:
    """The primary metric against training seconds, one point per model; the axis stays
    within the values the metric can take (`bounds`: no AUC axis running to 1.5)."""
    # Named in the legend, not beside the points: two models of similar time and score
    # would write their names over each other.
    data = [{
        "type": "scatter", "mode": "markers", "name": row.model,
        "x": [row.train_seconds or 0], "y": [row.metrics[metric].value],
        "marker": {"size": 12, "color": colour[row.model]},
    } for row in rows if metric in row.metrics]
    values = [point["y"][0] for point in data if point["y"][0] is not None]
    yaxis: dict[str, Any] = {"title": {"text": metric}}
    if values and math.isfinite(bounds[0]) and math.isfinite(bounds[1]):
        pad = max(0.05 * (max(values) - min(values)), 0.02 * (bounds[1] - bounds[0]))
        yaxis["range"] = [max(bounds[0], min(values) - pad) - 0.01 * pad,
                          min(bounds[1] + pad, max(values) + pad)]
    return {"data": data, "layout": _layout(f"Test {metric} vs training time",
                                            xaxis={"title": {"text": "training seconds"}},
                                            yaxis=yaxis)}


def fold_spread(rows: list[LeaderboardRow], metric: str, colour: dict[str, str]) -> Figure:
    """The primary metric on each fold's validation images, one column of points per
    cross-validated model, with its mean as a bar behind them."""
    folded = [(row.model, row.folds) for row in rows if row.folds]
    data: list[dict[str, Any]] = [{
        "type": "bar", "x": [model for model, _ in folded],
        "y": [folds.mean for _, folds in folded], "name": "mean over folds",
        "marker": {"color": [colour[model] for model, _ in folded]}, "opacity": 0.35,
    }]
    data += [{
        "type": "scatter", "mode": "markers", "name": model, "showlegend": False,
        "x": [model] * len(folds.values), "y": folds.values,
        "text": [f"fold {k + 1}" for k in range(len(folds.values))],
        "marker": {"size": 10, "color": colour[model], "line": {"width": 1}},
    } for model, folds in folded]
    return {"data": data, "layout": _layout(f"Validation {metric} on each fold",
                                            yaxis={"title": {"text": metric}})}


def sweep_progress(trials: list[SweepTrial], metric: str) -> Figure:
    """Each trial's validation score in order, and the best so far as a step line."""
    numbers = [t.number + 1 for t in trials]
    return {"data": [
        {"type": "scatter", "mode": "markers", "name": "trial", "x": numbers,
         "y": [t.value for t in trials],
         "text": [t.state for t in trials], "marker": {"size": 9, "color": PALETTE[0]}},
        {"type": "scatter", "mode": "lines", "name": "best so far", "x": numbers,
         "y": [t.best_so_far for t in trials], "line": {"shape": "hv",
                                                          "color": PALETTE[1]}},
    ], "layout": _layout(f"Sweep: validation {metric} by trial",
                         xaxis={"title": {"text": "trial"}},
                         yaxis={"title": {"text": metric}})}


def sweep_importance(importance: dict[str, float]) -> Figure:
    """Each searched setting's share of the score's variance (fANOVA)."""
    names = sorted(importance, key=importance.__getitem__)
    return {"data": [{"type": "bar", "orientation": "h", "y": names,
                      "x": [importance[n] for n in names],
                      "marker": {"color": PALETTE[2]}}],
            "layout": _layout("Sweep: importance of each setting",
                              xaxis={"title": {"text": "share of variance"}})}


def sweep_settings(trials: list[SweepTrial], metric: str, scales: dict[str, str]) -> Figure:
    """The score of each finished trial against each searched setting, one panel per
    setting sharing the score axis, each on the scale it was searched on (`scales`: name ->
    log, linear or category; a setting missing there is linear when every value is a
    number). Plain scatter panels, not parallel coordinates: those
    need WebGL, which a headless or remote browser often lacks, and their axis titles sit
    where the figure's title goes."""
    finished = [t for t in trials if t.value is not None and t.params]
    names = list(finished[0].params) if finished else []
    scores = [t.value for t in finished]
    columns = max(1, len(names))
    layout = _layout(f"Sweep: validation {metric} of each finished trial against each setting",
                     showlegend=False,
                     grid={"rows": 1, "columns": columns, "pattern": "coupled", "xgap": 0.12})
    data = []
    for i, name in enumerate(names, 1):
        suffix = "" if i == 1 else str(i)
        values = [t.params.get(name) for t in finished]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        scale = scales.get(name, "linear" if numeric else "category")
        data.append({"type": "scatter", "mode": "markers", "x": values if scale != "category"
                     else [str(v) for v in values], "y": scores, "xaxis": f"x{suffix}",
                     "yaxis": "y", "marker": {"size": 8, "color": PALETTE[0]},
                     "text": [f"trial {t.number + 1}" for t in finished],
                     "hovertemplate": f"%{{text}}: {name} %{{x}}, {metric} %{{y:.4f}}"
                                      "<extra></extra>"})
        layout[f"xaxis{suffix}"] = {"title": {"text": name, "font": {"size": 11}},
                                    "automargin": True, "type": scale,
                                    **({"categoryorder": "array",
                                        "categoryarray": _in_order(values)}
                                       if scale == "category" else {})}
    layout["yaxis"] = {"title": {"text": metric}, "automargin": True}
    return {"data": data, "layout": layout}


def _in_order(values: list[Any]) -> list[str]:
    """The distinct values as category labels, numbers by value before any text."""
    def key(value: Any) -> tuple[bool, float, str]:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return (not number, float(value) if number else 0.0, str(value))
    return [str(v) for v in sorted(set(values), key=key)]


def significance_matrix(comparison: Comparison, models: list[str]) -> Figure:
    """Pairwise p-values of the primary metric's paired bootstrap (McNemar without it);
    a p-value at the bootstrap's resolution reads `< 1/B`."""
    metric = comparison.primary_metric
    index = {m: i for i, m in enumerate(models)}
    values: list[list[float | None]] = [[None] * len(models) for _ in models]
    text: list[list[str]] = [[""] * len(models) for _ in models]
    for pair in comparison.pairs:
        if pair.a not in index or pair.b not in index:
            continue
        bootstrap = pair.bootstrap.get(metric)
        p_value = bootstrap.p_value if bootstrap else pair.mcnemar.p_value
        a, b = index[pair.a], index[pair.b]
        values[a][b] = values[b][a] = round(p_value, 4)
        text[a][b] = text[b][a] = display.p_value(p_value,
                                                  bootstrap.resamples if bootstrap else None)
    return {"data": [{"type": "heatmap", "z": values, "x": models, "y": models, "text": text,
                      "zmin": 0, "zmax": 0.2, "colorscale": "RdBu", "texttemplate": "%{text}",
                      "hovertemplate": "%{y} vs %{x}: p %{text}<extra></extra>",
                      "xgap": 2, "ygap": 2,
                      "colorbar": {"title": {"text": "p"}}}],
            "layout": _layout(f"Pairwise p-values ({metric}; < {comparison.alpha} = "
                              "significant)", yaxis={"autorange": "reversed"})}


def training_curves(history: History, colour: str) -> list[Figure]:
    """Loss and accuracy per epoch, train vs validation, with stages, early stopping and
    learning-rate reductions marked."""
    epochs = history.epochs
    x = [row.epoch for row in epochs]
    shapes, notes = [], []
    for previous, row in pairwise(epochs):
        if row.stage != previous.stage:
            shapes.append({"type": "line", "x0": row.epoch - 0.5, "x1": row.epoch - 0.5,
                           "y0": 0, "y1": 1, "yref": "paper", "line": {"dash": "dot"}})
            notes.append({"x": row.epoch - 0.5, "y": 0.99, "yref": "paper",
                          "yanchor": "top", "xanchor": "left",
                          "text": f"stage {row.stage}", "showarrow": False})
    for event in history.events:
        if event.event == "early_stopping" and event.best_epoch:
            shapes.append({"type": "line", "x0": event.best_epoch, "x1": event.best_epoch,
                           "y0": 0, "y1": 1, "yref": "paper",
                           "line": {"color": "green", "dash": "dash"}})
            notes.append({"x": event.best_epoch, "y": 0.85, "yref": "paper",
                          "yanchor": "top", "xanchor": "right",
                          "text": "best (restored)" if event.restored else "best",
                          "showarrow": False, "font": {"color": "green"}})
        if event.event == "lr_reduced":
            notes.append({"x": event.epoch, "y": 0.05, "yref": "paper",
                          "text": f"lr → {event.lr:.0e}", "showarrow": True, "ay": -25})
    figures = []
    curves = {"loss": ([r.train_loss for r in epochs], [r.val_loss for r in epochs]),
              "accuracy": ([r.train_accuracy for r in epochs], [r.val_accuracy for r in epochs])}
    for key, label in (("loss", "Loss"), ("accuracy", "Accuracy")):
        train, validation = curves[key]
        data = [{"type": "scatter", "mode": "lines+markers", "name": "train", "x": x,
                 "y": train, "line": {"color": colour, "dash": "dot"}}]
        if any(v is not None for v in validation):
            data.append({"type": "scatter", "mode": "lines+markers", "name": "validation",
                         "x": x, "y": validation, "line": {"color": colour}})
        values = [v for trace in data for v in trace["y"] if v is not None]
        yaxis, title = {}, f"{label} per epoch"
        if key == "loss":
            yaxis, title = _bulk_range(values, title)
        # Whole epochs only, and half an epoch of room at each end: no tick sits in the
        # corner where it would meet the y axis's lowest label.
        xaxis = {"title": {"text": "epoch"}, "range": [x[0] - 0.5, x[-1] + 0.5],
                 "dtick": max(1, len(x) // 8)}
        figures.append({"data": data, "layout": _layout(
            title, shapes=shapes, annotations=notes, xaxis=xaxis, yaxis=yaxis)})
    return figures


def _bulk_range(values: list[float], title: str) -> tuple[dict[str, Any], str]:
    """A y-range that shows the bulk of a loss curve when a few values (a first-epoch spike)
    are far above it; the title says that the axis is cut.

    Example:
        >>> _bulk_range([9.0, 0.5, 0.4, 0.35, 0.3, 0.3], "Loss")
        ({'range': [0, 0.6]}, 'Loss (axis cut at 0.6: 1 value above)')
    """
    if len(values) < 4:
        return {}, title
    ordered = sorted(values)
    bulk = ordered[int(0.8 * (len(ordered) - 1))]
    if ordered[-1] <= 3 * bulk:
        return {}, title
    top = round(1.2 * bulk, 3)
    above = sum(v > top for v in values)
    return ({"range": [min(0, ordered[0]), top]},
            f"{title} (axis cut at {top:g}: {above} value{'s' if above > 1 else ''} above)")


def confusion(evaluation: EvaluationDocument, classes: list[str], normalized: bool) -> Figure:
    """Confusion matrix heat map (rows: true class)."""
    z = evaluation.confusion.normalized if normalized else evaluation.confusion.counts
    return {"data": [{"type": "heatmap", "z": z, "x": classes, "y": classes,
                      "colorscale": "Blues", "reversescale": True,
                      "texttemplate": "%{z:.2f}" if normalized else "%{z}",
                      "showscale": False}],
            "layout": _layout("Confusion matrix" + (" (row-normalised)" if normalized
                                                    else " (counts)"),
                              xaxis={"title": {"text": "predicted"}, "type": "category"},
                              yaxis={"title": {"text": "true"}, "autorange": "reversed",
                                     "type": "category"})}


def curves(evaluation: EvaluationDocument, kind: Literal["roc", "pr"], classes: list[str]
           ) -> Figure:
    """ROC (kind 'roc') or precision-recall (kind 'pr') curves of `classes`, one-vs-rest."""
    data = []
    per_class = evaluation.per_class

    def shown(value: float | None) -> float:
        return float("nan") if value is None else value

    for name, roc in evaluation.roc.items() if kind == "roc" else ():
        if name in classes:
            data.append({"type": "scatter", "mode": "lines",
                         "name": f"{name} (AUC {shown(per_class[name].auc):.3f})",
                         "x": roc.fpr, "y": roc.tpr})
    for name, pr in evaluation.pr.items() if kind == "pr" else ():
        if name in classes:
            data.append({"type": "scatter", "mode": "lines",
                         "name": f"{name} (AP {shown(per_class[name].average_precision):.3f})",
                         "x": pr.recall, "y": pr.precision})
    if kind == "roc":
        data.append({"type": "scatter", "mode": "lines", "name": "chance", "x": [0, 1],
                     "y": [0, 1], "line": {"dash": "dot", "color": "#999"}})
        axes = ("false positive rate", "true positive rate (sensitivity)")
    else:
        axes = ("recall", "precision")
    title = ("ROC curve" if kind == "roc" else "Precision-recall curve") + (
        f" of {classes[0]}" if len(classes) == 1 else "s (one-vs-rest)")
    return {"data": data, "layout": _layout(
        title, xaxis={"title": {"text": axes[0]}}, yaxis={"title": {"text": axes[1]}})}


def reliability(evaluation: EvaluationDocument, colour: str) -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration. With
    temperature scaling, the calibrated probabilities are drawn too (dashed)."""
    curves = [("model", evaluation.calibration.bins, "solid")]
    temperature = evaluation.temperature
    if temperature:
        curves = [("as trained", curves[0][1], "solid"),
                  (f"temperature {temperature.value:.2f}", temperature.reliability.bins,
                   "dash")]
    data = [{"type": "scatter", "mode": "lines+markers", "name": name,
             "x": [b.confidence for b in bins], "y": [b.accuracy for b in bins],
             "text": [f"{b.count} images" for b in bins],
             "line": {"color": colour, "dash": dash}} for name, bins, dash in curves]
    data.append({"type": "scatter", "mode": "lines", "name": "perfect", "x": [0, 1],
                 "y": [0, 1], "line": {"dash": "dot", "color": "#999"}})
    return {"data": data, "layout": _layout(
        "Reliability diagram", xaxis={"title": {"text": "confidence"}},
        yaxis={"title": {"text": "accuracy"}})}


def robustness(found: Robustness, colour: str, severity: dict[str, str]) -> Figure:
    """Accuracy against each corruption's severity, one small panel per corruption with the
    severity's own values and unit (`severity`: name -> axis title), the clean accuracy
    dotted in each."""
    corruptions = list(found.corruptions.items())
    columns = min(3, len(corruptions))
    rows = -(-len(corruptions) // columns)
    clean = found.clean_accuracy
    data, layout = [], _layout(f"Robustness: accuracy under corruption (clean {clean:.3f}, "
                               "dotted)", height=150 + 170 * rows, showlegend=False,
                               grid={"rows": rows, "columns": columns, "pattern": "independent",
                                     "ygap": 0.45, "xgap": 0.25})
    shapes = []
    for i, (name, points) in enumerate(corruptions, 1):
        suffix = "" if i == 1 else str(i)
        # Older folders hold no interval: no whiskers then.
        bounds = [(r.low, r.high) for r in points if r.low is not None and r.high is not None]
        bars = ({"error_y": {"type": "data", "symmetric": False,
                             "array": [high - r.accuracy
                                       for r, (_, high) in zip(points, bounds, strict=True)],
                             "arrayminus": [r.accuracy - low
                                            for r, (low, _) in zip(points, bounds, strict=True)]}}
                if len(bounds) == len(points) else {})
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, **bars,
                     "x": [r.severity for r in points], "y": [r.accuracy for r in points],
                     "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "line": {"color": colour},
                     "hovertemplate": f"{name} %{{x}}: %{{y:.3f}}<extra></extra>"})
        layout[f"xaxis{suffix}"] = {"title": {"text": severity.get(name, f"{name} severity"),
                                              "font": {"size": 11}},
                                    "automargin": True, "type": "category"}
        layout[f"yaxis{suffix}"] = {"range": [0, 1.02], "automargin": True, "nticks": 4}
        shapes.append({"type": "line", "xref": f"x{suffix} domain", "x0": 0, "x1": 1,
                       "yref": f"y{suffix}", "y0": clean, "y1": clean,
                       "line": {"dash": "dot", "color": "#999"}})
    layout["shapes"] = shapes
    return {"data": data, "layout": layout}
