"""Regenerate RESULTS.md from run folders: each study's own numbers beside visionbench's.

Run from the repository root, naming the run folder of each study that was run:
    python benchmarks/results.py --brain runs/brain_tumor/<stamp> \
        [--chest runs/chest_xray/<stamp>] [--mnist runs/mnist/<stamp>] [--out RESULTS.md]
Every visionbench number is read from the run folder (leaderboard.json, evaluation.json,
metrics.json, config.yaml); the studies' numbers are quoted from their documents in
../shared/seeds (file and line given). The significance column is an exact one-sided
binomial test of our best model's test accuracy against the study's reported best accuracy
(the studies' per-image predictions are not available, so no paired test is possible).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

# The studies' own numbers, as printed in their documents.
STUDIES: dict[str, dict[str, Any]] = {
    "brain": {
        "title": "Brain-tumour MRI (Testing split, 394 images)",
        "source": "seeds/002 (report) lines 493, 584, 958; seeds/000 (notebook) line 613",
        "best_accuracy": 0.74,
        "best_name": "RGB CNN (report line 958)",
        "rows": {
            "ReLU CNN (model 1)": {"accuracy": 0.6701, "precision_weighted": 0.72462,
                                   "recall_weighted": 0.670051, "f1_weighted": 0.623519,
                                   "roc_auc_weighted": 0.84, "recall_glioma_tumor": 0.17},
            "InceptionV3": {"accuracy": 0.71, "precision_weighted": 0.74,
                            "recall_weighted": 0.71, "f1_weighted": 0.68},
            "RGB CNN": {"accuracy": 0.74},
        },
    },
    "chest": {
        "title": "Chest X-ray pneumonia (test split, 624 images)",
        "source": "seeds/004 (report), tables 1 and 2",
        "best_accuracy": 0.779,
        "best_name": "ResNet50",
        "rows": {
            "ResNet50": {"accuracy": 0.779},
            "10-conv CNN": {"accuracy": 0.718, "balanced_accuracy": 0.623, "f1_weighted": 0.719,
                            "cohen_kappa": 0.293},
        },
    },
    "mnist": {
        "title": "MNIST (the official 10k test set, split 64/16/20 here)",
        "source": "seeds/003 (assignment); reference: ~99.0 % for the baseline on full MNIST",
        "best_accuracy": None,
        "best_name": None,
        "rows": {},
    },
}
COLUMNS = ["accuracy", "balanced_accuracy", "precision_weighted", "recall_weighted",
           "f1_weighted", "global_f1", "roc_auc_weighted", "cohen_kappa"]


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _cell(entry: dict[str, float] | None) -> str:
    if not entry:
        return "–"
    if "low" in entry:
        return f"{entry['value']:.4f} [{entry['low']:.3f}, {entry['high']:.3f}]"
    return f"{entry['value']:.4f}"


def study_section(key: str, folder: Path) -> str:
    """Markdown for one study: its numbers, ours, per-class recall, significance, how."""
    study = STUDIES[key]
    board = _read(folder / "leaderboard.json")
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    provenance = config.get("provenance", {})
    lines = [f"## {study['title']}", "",
             f"Study numbers from {study['source']}. Run folder `{folder}`.", "",
             "| model | " + " | ".join(COLUMNS) + " | train s |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for name, values in study["rows"].items():
        cells = [f"{values[c]:.4f}" if c in values else "–" for c in COLUMNS]
        lines.append(f"| study: {name} | " + " | ".join(cells) + " | – |")
    for row in board["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | failed: {row.get('error', '')[:60]} |")
            continue
        cells = [_cell(row["metrics"].get(c)) for c in COLUMNS]
        seconds = row.get("train_seconds")
        lines.append(f"| visionbench: {row['model']} | " + " | ".join(cells)
                     + f" | {'–' if seconds is None else round(seconds)} |")
    lines += ["", "Per-class recall (test):", ""]
    classes = _read(folder / "data.json")["classes"]
    lines += ["| model | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 1)]
    for row in board["rows"]:
        path = folder / row["model"] / "evaluation.json"
        if path.is_file():
            per_class = _read(path)["per_class"]
            lines.append(f"| {row['model']} | "
                         + " | ".join(f"{per_class[c]['recall']:.3f}" for c in classes) + " |")
    best = board.get("best")
    if best:
        evaluation = _read(folder / best / "evaluation.json")
        accuracy = evaluation["metrics"]["accuracy"]["value"]
        images = evaluation["images"]
        lines += ["", f"Best by {board['primary_metric']}: **{best}**, test accuracy "
                  f"{_cell(evaluation['metrics']['accuracy'])} on {images} images."]
        if study["best_accuracy"] is not None:
            correct = round(accuracy * images)
            test = stats.binomtest(correct, images, study["best_accuracy"], "greater")
            lines.append(f"Against the study's best ({study['best_name']}, "
                         f"{study['best_accuracy']:.3f}): one-sided exact binomial p = "
                         f"{test.pvalue:.2e}.")
        clean = evaluation.get("clean_test")
        if clean:
            lines.append(f"Without the {clean['removed']} test images that duplicate training "
                         f"images ({clean['images']} left): accuracy "
                         f"{_cell(clean['metrics']['accuracy'])}.")
        metrics = _read(folder / best / "metrics.json")
        lines.append(f"Hardware: {metrics.get('device', '?')} on "
                     f"{provenance.get('platform', '?')}; training "
                     f"{metrics.get('timing', {}).get('train_seconds', '?')} s.")
    command = " ".join(provenance.get("command", [])) or "?"
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    """Parse the run folders and write the results page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in STUDIES:
        parser.add_argument(f"--{key}", type=Path, help=f"run folder of the {key} recipe")
    parser.add_argument("--out", type=Path, default=Path("RESULTS.md"))
    args = parser.parse_args()
    if all(getattr(args, key) is None for key in STUDIES):
        parser.error("name at least one run folder")
    sections = [
        study_section(key, getattr(args, key)) if getattr(args, key) is not None
        else f"## {STUDIES[key]['title']}\n\nNo run folder was given for this page yet.\n"
        for key in STUDIES
    ]
    header = ("# Results\n\nGenerated by `python benchmarks/results.py` from run folders; "
              "intervals are 95 % stratified bootstrap intervals on the test split.\n\n")
    args.out.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
