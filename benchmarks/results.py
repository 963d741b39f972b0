"""Regenerate RESULTS.md from run folders: each study's own numbers beside visionbench's.

Run from the repository root, naming the run folder of each study that was run:
    python benchmarks/results.py --brain runs/brain_tumor/<stamp> \
        [--chest runs/chest_xray/<stamp>] [--mnist runs/mnist/<stamp>] \
        [--seeds brain=runs/brain_tumor/<other seed> ...] [--variants chest=RUN ...] \
        [--ablation brain=RUN ...] [--label-issues brain=RUN ...] \
        [--notes benchmarks/results_notes.yaml] [--out RESULTS.md]
Every visionbench number is read from the run folder (leaderboard.json, evaluation.json,
metrics.json, config.yaml); the studies' numbers are quoted from their documents in
../shared/seeds (file and line given). Two tests of significance: an exact one-sided
binomial test of our recommended model's test accuracy (chosen on validation) against the
study's reported best accuracy
(the studies' per-image predictions are not available), and, where the recipe reruns the
study's best configuration ("reference" below), paired tests on the same test images from
the run's comparison.json (McNemar, paired bootstrap of the accuracy difference). Runs of
the same recipe under other training seeds (--seeds) add a seed-spread table; an ablation
run (--ablation: models that each add one thing to the one before) adds a table of each
step's paired gain; a run with label issues (--label-issues) a table of disputed labels per
class; the notes file
says where and how the runs were made, in words (numbers come from the folders). The
summaries RESULTS.md is built from live in benchmarks/result_runs/; `--check` compares
instead of writing (tests/test_results_page.py runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visionbench import display
from visionbench.errors import UserError
from visionbench.evaluate.references import binomial_p
from visionbench.fileio import write_text
from visionbench.provenance import command_line
from visionbench.rundir import (
    Comparison,
    DataRecord,
    EvaluationDocument,
    Leaderboard,
    ModelMetrics,
    RunFolder,
)
from visionbench.rundir.documents import Document, LabelIssues, LabelIssuesOfTest

# The studies' own numbers, as printed in their documents. `recall` is per class, from the
# confusion matrices the documents print.
STUDIES: dict[str, dict[str, Any]] = {
    "brain": {
        "title": "Brain-tumour MRI (Testing split, 394 images)",
        "source": "seeds/002 (report) lines 493, 584, 733, 762-764, 958; seeds/000 "
                  "(notebook) line 613",
        "targets": {"accuracy": 0.85},
        "best_accuracy": 0.74,
        "best_name": "RGB CNN (report line 958)",
        "reference": "cnn_rgb",
        "columns": ["accuracy", "balanced_accuracy", "precision_weighted", "recall_weighted",
                    "f1_weighted", "global_f1", "roc_auc_weighted", "cohen_kappa"],
        "rows": {
            "ReLU CNN (model 1)": {"accuracy": 0.6701, "precision_weighted": 0.72462,
                                   "recall_weighted": 0.670051, "f1_weighted": 0.623519,
                                   "roc_auc_weighted": 0.84,
                                   "recall": {"glioma_tumor": 0.17, "meningioma_tumor": 0.878,
                                              "no_tumor": 0.962, "pituitary_tumor": 0.608}},
            "ReLU CNN + augmentation (model 2)": {
                "accuracy": 0.66, "precision_weighted": 0.71, "recall_weighted": 0.66,
                "f1_weighted": 0.62, "roc_auc_weighted": 0.81},
            "Sigmoid CNN (model 3)": {"accuracy": 0.2538, "precision_weighted": 0.06,
                                      "recall_weighted": 0.25, "f1_weighted": 0.10,
                                      "roc_auc_weighted": 0.41},
            "InceptionV3": {"accuracy": 0.71, "precision_weighted": 0.74,
                            "recall_weighted": 0.71, "f1_weighted": 0.68},
            "RGB CNN": {"accuracy": 0.74},
        },
    },
    "chest": {
        "title": "Chest X-ray pneumonia (test split, 624 images)",
        "source": "seeds/004 (report), tables 1 and 2 and the confusion matrices beside them "
                  "(its F1-score equals its accuracy: a micro average)",
        "targets": {"accuracy": 0.93, "roc_auc_weighted": 0.97},
        "best_accuracy": 0.779,
        "best_name": "ResNet50",
        "reference": "transfer",
        "columns": ["accuracy", "balanced_accuracy", "f1_macro", "f1_weighted",
                    "roc_auc_weighted", "cohen_kappa", "log_loss"],
        "rows": {
            "ResNet50": {"accuracy": 0.779, "balanced_accuracy": 0.723, "cohen_kappa": 0.488,
                         "log_loss": 0.462, "recall": {"NORMAL": 0.509, "PNEUMONIA": 0.941}},
            "10-conv CNN": {"accuracy": 0.718, "balanced_accuracy": 0.623, "cohen_kappa": 0.293,
                            "log_loss": 1.310, "recall": {"NORMAL": 0.252, "PNEUMONIA": 0.997}},
        },
    },
    "mnist": {
        "title": "MNIST (the official 10k test set, split 64/16/20 here)",
        "source": "seeds/003 (assignment); reference: ~99.0 % for the baseline on full MNIST",
        "best_accuracy": None,
        "best_name": None,
        "reference": "baseline",
        "columns": ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "log_loss",
                    "cohen_kappa"],
        "rows": {},
    },
}
CLINICAL = ["sensitivity", "specificity", "ppv", "npv", "missed_positives", "false_alarms"]
COUNTS = {"missed_positives": 0, "false_alarms": 0}  # image counts: no decimals


def _read(folder: Path, kind: type[Document], model: str | None = None
          ) -> dict[str, Any] | None:
    """A run-folder document (validated by visionbench.rundir) in its JSON form, or None."""
    run = RunFolder(folder)
    found = (run.model(model) if model is not None else run).read(kind)
    if found is None:
        return None
    # Through JSON text, as the file holds it: NaN stays NaN, a status is its word.
    return json.loads(json.dumps(found.model_dump(exclude_unset=True), default=str))


def _board(folder: Path) -> dict[str, Any]:
    found = _read(folder, Leaderboard)
    if found is None:
        raise UserError(f"{folder} has no leaderboard")
    return found


def _config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load(RunFolder(folder).config_file.read_text(encoding="utf-8"))


def _finished(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The leaderboard rows of models that finished, by name, in leaderboard order."""
    return {row["model"]: row for row in board["rows"] if row["status"] == "ok"}


def chosen_on_validation(folder: Path, board: dict[str, Any]) -> tuple[str | None, str]:
    """The model visionbench recommends (chosen on validation, never on test), and how.

    A folder evaluated by a visionbench that chose on validation names it; the stored
    summaries of older runs do not (they named a test-chosen best) and hold no validation
    predictions, so there the choice is each model's validation accuracy as its
    metrics.json recorded it, ties to the fewer parameters.
    """
    if board.get("recommended"):
        return board["recommended"], "recommended by visionbench on validation"
    scores = {}
    for name in _finished(board):
        metrics = _read(folder, ModelMetrics, name) or {}
        if metrics.get("val"):
            scores[name] = (metrics["val"]["accuracy"], -(metrics.get("parameters") or 0))
    if not scores:
        return None, "no model has a validation score"
    return max(scores, key=scores.__getitem__), "highest validation accuracy"


def test_best(board: dict[str, Any], metric: str = "accuracy") -> str | None:
    """The model with the highest test value of `metric`: a description, optimistic."""
    values = {name: row["metrics"][metric]["value"] for name, row in _finished(board).items()
              if metric in row.get("metrics", {})}
    return max(values, key=values.__getitem__) if values else None


def _cell(entry: dict[str, float] | None, digits: int = 4) -> str:
    return display.interval(entry, digits, min(digits, 3))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _evaluations(folder: Path, board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each finished model's evaluation.json, in leaderboard order."""
    found = {}
    for row in board["rows"]:
        evaluation = _read(folder, EvaluationDocument, row["model"])
        if row["status"] == "ok" and evaluation is not None:
            found[row["model"]] = evaluation
    return found


def metric_table(study: dict[str, Any], board: dict[str, Any]) -> list[str]:
    """The study's global metrics beside every model of the run, with intervals."""
    columns = study["columns"]
    rows = [[f"study: {name}", *(f"{values[c]:.4f}" if c in values else "–" for c in columns),
             "–"] for name, values in study["rows"].items()]
    for row in board["rows"]:
        if row["status"] != "ok":
            rows.append([row["model"], f"{row['status']}: {(row.get('error') or '')[:80]}",
                         *[""] * len(columns)])
            continue
        seconds = row.get("train_seconds")
        rows.append([f"visionbench: {row['model']}",
                     *(_cell(row["metrics"].get(c)) for c in columns),
                     "–" if seconds is None else str(round(seconds))])
    return _table(["model", *columns, "train s"], rows)


def recall_table(study: dict[str, Any], classes: list[str],
                 evaluations: dict[str, dict[str, Any]]) -> list[str]:
    """Per-class recall of the study's models (where printed) and of every model here."""
    rows = [[f"study: {name}", *(f"{values['recall'][c]:.3f}" for c in classes)]
            for name, values in study["rows"].items() if "recall" in values]
    rows += [[name, *(f"{e['per_class'][c]['recall']:.3f}" for c in classes)]
             for name, e in evaluations.items()]
    return ["Per-class recall (test):", "", *_table(["model", *classes], rows)]


def _clean_recall(clean: dict[str, Any]) -> str:
    support = clean.get("support", {})
    return ", ".join(
        f"{name} {'–' if recall is None else f'{recall:.2f}'} ({support.get(name, '?')})"
        for name, recall in clean["recall"].items())


def clean_table(evaluations: dict[str, dict[str, Any]]) -> list[str]:
    """Accuracy on the whole test split and without the images that duplicate training ones."""
    rows = [[name, _cell(e["metrics"]["accuracy"]), str(e["clean_test"]["images"]),
             _cell(e["clean_test"]["metrics"]["accuracy"]),
             _cell(e["clean_test"]["metrics"].get("balanced_accuracy")),
             _clean_recall(e["clean_test"])]
            for name, e in evaluations.items() if e.get("clean_test")]
    if not rows:
        return []
    removed = next(e["clean_test"]["removed"] for e in evaluations.values() if e.get("clean_test"))
    return [f"Test split as given, and without the {removed} test images that duplicate "
            "training images (exactly or nearly); recall per class with the images it keeps "
            "(– where none is left):", "",
            *_table(["model", "accuracy (all)", "images left", "accuracy (clean)",
                     "balanced accuracy (clean)", "recall (clean, images)"], rows)]


def clinical_table(evaluations: dict[str, dict[str, Any]]) -> list[str]:
    """Sensitivity, specificity and missed positives at argmax and at the validation threshold."""
    rows = []
    for name, e in evaluations.items():
        clinical = e.get("clinical")
        if not clinical:
            continue
        chosen = clinical.get("chosen_threshold") or {}
        for reading in ("argmax", "threshold"):
            if reading not in clinical:
                continue
            label = "argmax" if reading == "argmax" else (
                f"threshold {chosen.get('threshold', float('nan')):.3f} ({chosen.get('method')})")
            rows.append([name, label, *(_cell(clinical[reading].get(key), COUNTS.get(key, 3))
                                        for key in CLINICAL)])
    if not rows:
        return []
    group = next(e["clinical"]["group"] for e in evaluations.values() if e.get("clinical"))
    return [f"Clinical reading for **{group}** (positive) vs the rest; the threshold is chosen "
            "on the validation split:", "", *_table(["model", "reading", *CLINICAL], rows)]


def _against(pair: dict[str, Any], reference: str, resamples: int | None) -> dict[str, Any]:
    """One pair of comparison.json seen as "the other model minus `reference`"."""
    other = pair["b"] if pair["a"] == reference else pair["a"]
    # Differences are stored as a - b; show them as other - reference.
    sign = 1.0 if pair["a"] == other else -1.0
    accuracy = pair["bootstrap"]["accuracy"]
    low, high = sorted((sign * accuracy["low"], sign * accuracy["high"]))
    mcnemar = pair["mcnemar"]
    better, worse = ((mcnemar["only_a"], mcnemar["only_b"]) if pair["a"] == other
                     else (mcnemar["only_b"], mcnemar["only_a"]))
    return {"model": other, "difference": sign * accuracy["difference"], "low": low,
            "high": high, "better": better, "worse": worse, "mcnemar": mcnemar,
            "bootstrap_p": display.p_value(accuracy["p_value"],
                                           accuracy.get("resamples", resamples))}


def _pairs_against(folder: Path, reference: str) -> list[dict[str, Any]]:
    comparison = _read(folder, Comparison)
    if comparison is None:
        return []
    # Summaries written before pairs recorded their resamples: the evaluation's count.
    evaluation = _read(folder, EvaluationDocument, reference) or {}
    resamples = evaluation.get("bootstrap", {}).get("resamples")
    return [_against(pair, reference, resamples) for pair in comparison["pairs"]
            if reference in (pair["a"], pair["b"])]


def paired_table(folder: Path, reference: str, names: list[str]) -> list[str]:
    """Every model against `reference` on the same test images: difference and p-values."""
    if reference not in names:
        return []
    rows = [[found["model"],
             f"{found['difference']:+.4f} [{found['low']:+.3f}, {found['high']:+.3f}]",
             f"{found['better']} / {found['worse']}",
             f"{found['mcnemar']['p_value']:.2e} ({found['mcnemar']['method']})",
             found["bootstrap_p"]] for found in _pairs_against(folder, reference)]
    if not rows:
        return []
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda row: order.get(row[0], len(order)))
    return [f"Paired against **{reference}** on the same test images (accuracy difference "
            "with its paired-bootstrap interval; images only this model / only the reference "
            "gets right; McNemar and bootstrap p-values):", "",
            *_table(["model", "accuracy − reference", "only model / only reference right",
                     "McNemar p", "bootstrap p"], rows)]


def _against_study(study: dict[str, Any], evaluation: dict[str, Any]) -> float | None:
    """One-sided exact binomial p of our accuracy against the study's reported best."""
    if study["best_accuracy"] is None:
        return None
    images = evaluation["images"]
    correct = round(evaluation["metrics"]["accuracy"]["value"] * images)
    # The same test as the report's reference rows (evaluate.references).
    return binomial_p(correct, images, study["best_accuracy"], "greater")


def summary_table(folders: dict[str, Path]) -> list[str]:
    """One line per study: its best, ours, both tests of the difference, the targets."""
    rows = []
    for key, folder in folders.items():
        study = STUDIES[key]
        board = _board(folder)
        best, _ = chosen_on_validation(folder, board)
        evaluation = _read(folder, EvaluationDocument, best) if best else None
        if best not in _finished(board) or evaluation is None:
            continue
        top = test_best(board)
        reported = ("–" if study["best_accuracy"] is None
                    else f"{study['best_accuracy']:.3f}, {study['best_name']}")
        p_value = _against_study(study, evaluation)
        paired = next((found for found in _pairs_against(folder, study["reference"])
                       if found["model"] == best), None)
        rows.append([
            study["title"].split(" (")[0], reported,
            f"{_cell(evaluation['metrics']['accuracy'])} ({best})",
            "same" if top == best else
            f"{board['rows'][_row_index(board, top)]['metrics']['accuracy']['value']:.4f} "
            f"({top})",
            "–" if p_value is None else f"{p_value:.1e}",
            "–" if paired is None else (
                f"{paired['difference']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}], "
                f"p {paired['mcnemar']['p_value']:.1e}"),
            " ".join(target_lines(study.get("targets", {}), board, best)) or "–"])
    return ["Each study's best reported test accuracy beside the model visionbench recommends, "
            "chosen on the validation split (its test accuracy is reported once); the best "
            "on test is shown beside it and is optimistic: the highest of several noisy test "
            "scores. p: one-sided exact binomial test of the recommended model against the "
            "reported number; paired: the recommended model against the recipe's rerun of the "
            "study's configuration on the same images (difference, McNemar p).", "",
            *_table(["study", "study's best", "visionbench's recommended [95 % CI]",
                     "best on test (optimistic)", "p", "paired vs rerun of the study",
                     "targets"], rows), ""]


def _row_index(board: dict[str, Any], model: str) -> int:
    return next(i for i, row in enumerate(board["rows"]) if row["model"] == model)


def _flag_values(command: list[str], flag: str) -> list[str]:
    """The words that follow each `flag` in `command` (`--model a --model b` -> a, b)."""
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == flag]


def _selects(command: list[str], model: str) -> bool:
    """Whether `visionbench run ... [--model X ...]` trains `model`."""
    chosen = _flag_values(command, "--model")
    return not chosen or model in chosen


def _folder_command(provenance: dict[str, Any], model: str) -> list[str]:
    """For models trained before commands were recorded per model: the folder's command,
    if it is one that trained this model."""
    command = provenance.get("command") or []
    if command and _selects(command, model):
        return command_line(command)
    return ["not recorded (trained before visionbench recorded commands per model)"]


def _train_seconds(metrics: dict[str, Any]) -> str:
    seconds = metrics.get("timing", {}).get("train_seconds")
    return "–" if seconds is None else f"{seconds:.0f}"


def _hardware_of(metrics: dict[str, Any], provenance: dict[str, Any]) -> str:
    """What trained a model: recorded per model, else (older runs) its device and the
    platform of the folder's command; an ensemble trained nothing."""
    if metrics.get("ensemble"):
        return f"ensemble of {', '.join(metrics['ensemble'])}"
    return metrics.get("hardware") or (
        f"{metrics.get('device', '?')} on {provenance.get('platform', '?')}")


def how_table(folder: Path, board: dict[str, Any], provenance: dict[str, Any]) -> list[str]:
    """Which hardware trained each model, for how long, and by which command."""
    commands: list[str] = []
    rows = []
    for row in board["rows"]:
        metrics = _read(folder, ModelMetrics, row["model"]) or {}
        members = metrics.get("ensemble")
        if members:
            # Nothing was trained: it averages its members' saved test probabilities.
            rows.append([row["model"], f"{_hardware_of(metrics, provenance)} (no training; "
                         "train s: its members')", _train_seconds(metrics), "–", "–", "–"])
            continue
        hardware = _hardware_of(metrics, provenance)
        # A test-time augmentation row trained nothing of its own: its model's command and
        # source made it.
        trained = _read(folder, ModelMetrics, _plain_model(row["model"])) or metrics
        recorded = trained.get("command")
        command = " ".join(command_line(recorded) if recorded
                           else _folder_command(provenance, row["model"]))
        if command not in commands:
            commands.append(command)
        code = trained.get("code") or {
            "commit": provenance.get("git", {}).get("visionbench_commit"),
            "dirty": provenance.get("git", {}).get("visionbench_dirty")}
        commit = (code.get("commit") or "?")[:7] + (" (+ changes)" if code.get("dirty") else "")
        rows.append([row["model"], hardware, _train_seconds(metrics),
                     str(metrics.get("epochs") or "–"), commit,
                     f"({commands.index(command) + 1})"])
    lines = ["How each model was trained (commit: the visionbench source it ran; check it out "
             "to rerun the command exactly):", "",
             *_table(["model", "hardware", "train s", "epochs", "commit", "command"], rows),
             ""]
    lines += [f"({i}) `{command}`" for i, command in enumerate(commands, 1)]
    return lines


def target_lines(targets: dict[str, float], board: dict[str, Any], chosen: str | None
                 ) -> list[str]:
    """Each target of the issue that set it, judged on the recommended model's test value;
    the highest test value of the run beside it (optimistic)."""
    lines = []
    for metric, goal in targets.items():
        values = {row["model"]: row["metrics"][metric]["value"] for row in board["rows"]
                  if row["status"] == "ok" and metric in row["metrics"]}
        if not values:
            continue
        top = max(values, key=values.__getitem__)
        judged = chosen if chosen in values else top
        verdict = "reached" if values[judged] >= goal else "missed"
        line = f"Target {metric} ≥ {goal}: {verdict} ({judged}, {values[judged]:.4f}"
        if judged != top:
            line += f"; highest on test: {top}, {values[top]:.4f}, optimistic"
        lines.append(line + ").")
    return lines


def _seed(folder: Path) -> int:
    return int(_config(folder)["train"]["seed"])


def seed_table(folder: Path, others: list[Path]) -> list[str]:
    """Test accuracy of each model under every training seed run, with mean and spread.

    One run is one draw: a gap between two models smaller than their seed-to-seed spread is
    not a ranking. The validation split is the same in every run (its seed is separate).
    """
    if not others:
        return []
    runs = [folder, *others]
    boards = [_finished(_board(run)) for run in runs]
    names = [name for name in boards[0] if sum(name in board for board in boards) > 1]
    rows = []
    for name in names:
        values = [board[name]["metrics"]["accuracy"]["value"] if name in board else None
                  for board in boards]
        found = np.array([v for v in values if v is not None])
        rows.append([name, *("–" if v is None else f"{v:.4f}" for v in values),
                     f"{found.mean():.4f}", f"{found.std(ddof=1):.4f}",
                     f"{found.min():.4f}–{found.max():.4f}"])
    seeds = [f"seed {_seed(run)}" for run in runs]
    return ["Test accuracy under other training seeds (same data, splits and recipe; seed "
            f"{_seed(folder)} is the run above; extra folders: "
            + ", ".join(f"`{run}`" for run in others) + "):", "",
            *_table(["model", *seeds, "mean", "sd", "range"], rows)]


# --set keys that say where a run read and wrote, not what it computed.
PLACES = ("data.path", "output.dir", "train.progress")


def _settings(provenance: dict[str, Any]) -> str:
    """The `--set` overrides of the command that made a folder, where files went aside."""
    found = [item for item in _flag_values(provenance.get("command") or [], "--set")
             if not item.startswith(PLACES)]
    return ", ".join(f"`{item}`" for item in found) or "the recipe as it is"


def variant_table(folder: Path, variants: list[Path]) -> list[str]:
    """The models of other runs of the recipe (other settings or hardware) beside the same
    models of the run above: unpaired, so read the intervals."""
    if not variants:
        return []
    runs = [folder, *variants]
    boards = [_finished(_board(run)) for run in runs]
    in_variants = {name for board in boards[1:] for name in board}
    names = [name for name in boards[0] if name in in_variants] + sorted(
        in_variants - set(boards[0]))
    rows = []
    for run, board in zip(runs, boards, strict=True):
        provenance = _config(run).get("provenance") or {}
        label = "the run above" if run == folder else f"`{run}`"
        for name in (n for n in names if n in board):
            metrics = board[name]["metrics"]
            hardware = _hardware_of(_read(run, ModelMetrics, name) or {}, provenance)
            rows.append([name, label, _settings(provenance), hardware,
                         _cell(metrics.get("accuracy")),
                         _cell(metrics.get("balanced_accuracy")),
                         _cell(metrics.get("roc_auc_weighted"))])
    return ["The same models in other runs of this recipe (other settings or hardware; "
            "different runs, so compare intervals, not paired tests):", "",
            *_table(["model", "run", "settings", "hardware", "accuracy", "balanced accuracy",
                     "AUC (weighted)"], rows)]


def _plain_model(name: str) -> str:
    """The model a test-time augmentation row averages the views of (itself otherwise)."""
    return name.removesuffix("+tta")


def ablation_steps(chain: list[str]) -> list[tuple[str | None, str]]:
    """(model it adds to, model) along a chain in the config's order: a test-time
    augmentation row adds to its own model, a model to the plain model before it.

    Example:
        >>> ablation_steps(["a", "a+tta", "b", "b+tta"])
        [(None, 'a'), ('a', 'a+tta'), ('a', 'b'), ('b', 'b+tta')]
    """
    steps: list[tuple[str | None, str]] = []
    previous: str | None = None
    for name in chain:
        if name.endswith("+tta"):
            steps.append((_plain_model(name), name))
        else:
            steps.append((previous, name))
            previous = name
    return steps


def ablation_table(folder: Path) -> list[str]:
    """A chain of models, each the previous one plus one addition (the config's model order,
    a test-time augmentation row right after its model): each step's test accuracy and its
    paired difference, on the same test images, to the model it adds to (the plain model
    before it; for a test-time augmentation row, its own model)."""
    board = _board(folder)
    rows = _finished(board)
    config = _config(folder)
    chain = []
    for name in config["models"]:
        chain += [found for found in (name, f"{name}+tta") if found in rows]
    comparison = _read(folder, Comparison) or {"pairs": []}
    evaluations = _evaluations(folder, board)
    lines = []
    for previous, name in ablation_steps(chain):
        metrics = _read(folder, ModelMetrics, name) or {}
        evaluation = evaluations.get(name, {})
        step = ["–", "–", "–", "–"]
        if previous is not None:
            pair = next((p for p in comparison["pairs"] if {p["a"], p["b"]} == {name, previous}),
                        None)
            if pair is not None:
                found = _against(pair, previous, evaluation.get("bootstrap", {}).get("resamples"))
                # Rounded before the sign is printed: a float's -1e-17 is no loss.
                gain = round(found["difference"], 4) + 0.0
                step = [previous, f"{gain:+.4f} [{found['low']:+.3f}, {found['high']:+.3f}]",
                        f"{found['mcnemar']['p_value']:.2g}", found["bootstrap_p"]]
        validation = rows[name].get("validation")
        lines.append([name, metrics.get("description") or "", _cell(
            evaluation.get("metrics", {}).get("accuracy")), *step,
            "–" if validation is None else f"{validation:.4f}"])
    if not lines:
        return []
    return [f"Ablation (run folder `{folder}`): each model is the model named in `over` plus "
            "what its `adds` says (a `+tta` row: its own model with test-time augmentation); "
            "accuracy on the same test images, the paired difference to that model with its "
            "bootstrap interval, McNemar and bootstrap p-values, and validation accuracy (what "
            "the recommendation reads).", "",
            *_table(["model", "adds", "test accuracy", "over", "gain", "McNemar p",
                     "bootstrap p", "validation accuracy"], lines)]


def label_issue_table(folder: Path) -> list[str]:
    """Per class, how many images confident learning disputes: of the training images
    (out-of-fold or validation predictions) and, where it was run, of the test split."""
    found = {"training": _read(folder, LabelIssues), "test": _read(folder, LabelIssuesOfTest)}
    found = {split: document for split, document in found.items() if document is not None}
    if not found:
        return []
    classes = list(next(iter(found.values()))["by_class"])
    rows = []
    for name in classes:
        row = [name]
        for document in found.values():
            counts = document["by_class"][name]
            share = counts["issues"] / counts["images"] if counts["images"] else 0.0
            row.append(f"{counts['issues']} of {counts['images']} ({share:.1%})")
        rows.append(row)
    described = "; ".join(
        f"{split}: {document['found']} of {document['images_scored']} images "
        f"({document['source']} predictions of {document['model']})"
        + (", most often " + ", ".join(f"{p['given']} called {p['suggested']} ({p['count']})"
                                       for p in document["pairs"][:3])
           if document["pairs"] else "")
        for split, document in found.items())
    return [f"Label issues (run folder `{folder}`; cleanlab's confident learning on "
            f"out-of-sample predictions). {described}.", "",
            *_table(["class", *(f"disputed, {split}" for split in found)], rows)]


def _before_after(pair: dict[str, float]) -> str:
    return f"{pair['before']:.3f} → {pair['after']:.3f}"


def probability_table(folder: Path) -> list[str]:
    """Per model, what temperature scaling (fitted on validation) did to its test
    calibration, and how often its conformal prediction sets (calibrated on validation)
    held the true class on test, overall and for each class whose interval lies wholly
    below the target."""
    evaluations = _evaluations(folder, _board(folder))
    scaled, sets = [], []
    for name, evaluation in evaluations.items():
        if evaluation.get("temperature"):
            fitted = evaluation["temperature"]
            scaled.append([name, f"{fitted['value']:.3f}", _before_after(fitted["validation_nll"]),
                           *(_before_after(fitted["test"][metric]) for metric in
                             ("expected_calibration_error", "log_loss", "brier_score"))])
        if evaluation.get("conformal"):
            found = evaluation["conformal"]
            below = ", ".join(f"{cls} {row['coverage']:.2f} [{row['low']:.2f}, "
                              f"{row['high']:.2f}] ({row['images']})"
                              for cls, row in found["per_class"].items() if row["below_target"])
            sizes = ", ".join(f"{size}: {count}" for size, count in found["set_sizes"].items())
            sets.append([name, f"{found['score']}, {display.level(found['coverage_target'])}",
                         f"{found['coverage']:.3f} [{found['low']:.3f}, {found['high']:.3f}]",
                         f"{found['mean_set_size']:.2f} ({sizes})", below or "none"])
    lines = []
    if scaled:
        lines += [f"Temperature scaling (run folder `{folder}`): the temperature fitted on the "
                  "validation split, validation log loss before → after, and on test the "
                  "expected calibration error, log loss and Brier score before → after.", "",
                  *_table(["model", "temperature", "validation log loss", "test ECE",
                           "test log loss", "test Brier"], scaled)]
    if sets:
        lines += [*([""] if lines else []),
                  f"Conformal prediction sets (run folder `{folder}`; split conformal, "
                  "threshold from the validation split): the share of test images whose set "
                  "holds the true class, with its exact binomial interval, the mean set size "
                  "(images per size), and the classes whose interval lies wholly below the "
                  "target (coverage [interval] (images)).", "",
                  *_table(["model", "score, target", "coverage on test", "mean set size",
                           "classes below target"], sets)]
    return lines


def study_section(key: str, folder: Path, seeds: list[Path] | None = None,
                  notes: list[str] | None = None, variants: list[Path] | None = None,
                  ablations: list[Path] | None = None,
                  label_issues: list[Path] | None = None,
                  probabilities: list[Path] | None = None) -> str:
    """Markdown for one study: its numbers beside ours, recall, tests, seed spread, other
    runs, hardware, commands; `notes` are printed under the title (how and where the runs
    were made)."""
    study = STUDIES[key]
    board = _board(folder)
    config = _config(folder)
    classes = RunFolder(folder).require(DataRecord).classes
    evaluations = _evaluations(folder, board)
    lines = [f"## {study['title']}", "",
             f"Study numbers from {study['source']}. Run folder `{folder}`.", "",
             *(f"{note}\n" for note in notes or []),
             *metric_table(study, board), "", *recall_table(study, classes, evaluations)]
    best, how = chosen_on_validation(folder, board)
    if best in evaluations:
        evaluation = evaluations[best]
        lines += ["", f"Recommended ({how}): **{best}**, test accuracy "
                  f"{_cell(evaluation['metrics']['accuracy'])} on {evaluation['images']} "
                  "images."]
        top = test_best(board)
        if top is not None and top != best:
            lines.append(f"Best on test: {top}, test accuracy "
                         f"{_cell(evaluations[top]['metrics']['accuracy'])} (the highest of "
                         "several noisy test scores: optimistic, not a choice).")
        p_value = _against_study(study, evaluation)
        if p_value is not None:
            lines.append(f"Against the study's reported best ({study['best_name']}, "
                         f"{study['best_accuracy']:.3f}): one-sided exact binomial p = "
                         f"{p_value:.2e}.")
    lines += target_lines(study.get("targets", {}), board, best)
    for block in (paired_table(folder, study["reference"], list(evaluations)),
                  clinical_table(evaluations), clean_table(evaluations),
                  seed_table(folder, seeds or []), variant_table(folder, variants or []),
                  *(ablation_table(run) for run in ablations or []),
                  *(label_issue_table(run) for run in label_issues or []),
                  *(probability_table(run) for run in probabilities or []),
                  how_table(folder, board, config.get("provenance", {}))):
        if block:
            lines += ["", *block]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse the run folders and write the results page (or, with --check, compare it)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in STUDIES:
        parser.add_argument(f"--{key}", type=Path, help=f"run folder of the {key} recipe")
    parser.add_argument("--seeds", action="append", default=[], metavar="STUDY=FOLDER",
                        help="a run folder of the same recipe under another train.seed")
    parser.add_argument("--variants", action="append", default=[], metavar="STUDY=FOLDER",
                        help="a run folder of the same recipe with other settings or hardware")
    parser.add_argument("--ablation", action="append", default=[], metavar="STUDY=FOLDER",
                        help="a run folder whose models form a chain of additions")
    parser.add_argument("--label-issues", action="append", default=[], metavar="STUDY=FOLDER",
                        help="a run folder with label issues (data/label_issues*.json)")
    parser.add_argument("--probabilities", action="append", default=[], metavar="STUDY=FOLDER",
                        help="a run folder with temperature scaling or conformal sets")
    parser.add_argument("--notes", type=Path, metavar="YAML",
                        help="{study: [paragraph, ...]} printed under each study's title")
    parser.add_argument("--out", type=Path, default=Path("RESULTS.md"))
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if --out differs from what the folders give")
    args = parser.parse_args(argv)
    if all(getattr(args, key) is None for key in STUDIES):
        parser.error("name at least one run folder")
    extra: dict[str, dict[str, list[Any]]] = {
        key: {"seeds": [], "notes": [], "variants": [], "ablations": [], "label_issues": [],
              "probabilities": []}
        for key in STUDIES}
    for kind, option in (("seeds", "seeds"), ("variants", "variants"),
                         ("ablations", "ablation"), ("label_issues", "label_issues"),
                         ("probabilities", "probabilities")):
        for value in getattr(args, option):
            key, _, folder = value.partition("=")
            if key not in STUDIES or not folder:
                parser.error(f"--{option.replace('_', '-')} {value!r}: write STUDY=FOLDER, "
                             "STUDY one of "
                             f"{list(STUDIES)}")
            extra[key][kind].append(Path(folder))
    named = [getattr(args, key) for key in STUDIES if getattr(args, key) is not None]
    for folder in [*named, *(f for key in STUDIES
                             for kind in ("seeds", "variants", "ablations", "label_issues",
                                          "probabilities")
                             for f in extra[key][kind])]:
        if not RunFolder(folder).has(Leaderboard):
            parser.error(f"{folder} is not a finished run folder (no leaderboard.json): "
                         "name the folder `visionbench run` printed")
    if args.notes and not args.notes.is_file():
        parser.error(f"--notes {args.notes}: no such file")
    notes = yaml.safe_load(args.notes.read_text(encoding="utf-8")) if args.notes else {}
    for key, paragraphs in (notes or {}).items():
        if key not in STUDIES:
            parser.error(f"--notes: unknown study {key!r}; known: {list(STUDIES)}")
        extra[key]["notes"] = [" ".join(str(p).split()) for p in paragraphs]
    sections = [
        study_section(key, getattr(args, key), **extra[key]) if getattr(args, key) is not None
        else f"## {STUDIES[key]['title']}\n\nNo run folder was given for this page yet.\n"
        for key in STUDIES
    ]
    command = " ".join(word for word in argv if word != "--check")
    header = ("# Results\n\nGenerated from run folders by `python benchmarks/results.py "
              f"{command}`; intervals are 95 % stratified bootstrap intervals on the test "
              "split.\n\n")
    given = {key: getattr(args, key) for key in STUDIES if getattr(args, key) is not None}
    page = header + "\n".join(["\n".join(summary_table(given)), *sections])
    if args.check:
        if not args.out.is_file() or args.out.read_text(encoding="utf-8") != page:
            print(f"{args.out} differs from what its run folders give: rerun without --check")
            return 1
        print(f"{args.out} matches its run folders")
        return 0
    write_text(args.out, page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
