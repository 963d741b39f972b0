"""Label issues: confident learning (cleanlab) on out-of-sample probabilities finds images
planted under the wrong class, and a run lists them in its data folder and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_yaml
from visionbench.cli import main
from visionbench.evaluate.label_issues import label_issues
from visionbench.rundir.predictions import Predictions


def test_flipped_labels_are_found_and_ranked_first():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    prob = np.full((300, 3), 0.05)
    prob[np.arange(300), truth] = 0.9
    prob += rng.uniform(0, 0.05, prob.shape)
    prob /= prob.sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(300, 15, replace=False)
    given[flipped] = (truth[flipped] + 1) % 3
    found = label_issues(Predictions([f"img{i}" for i in range(300)], given, prob),
                         ["a", "b", "c"])
    named = {row.id for row in found["issues"]}
    planted = {f"img{i}" for i in flipped}
    assert named == planted
    assert found["found"] == 15 and found["images_scored"] == 300
    assert sum(row.issues for row in found["by_class"].values()) == 15
    assert sum(pair.count for pair in found["pairs"]) == 15
    first = found["issues"][0]
    assert first.given_probability == min(r.given_probability for r in found["issues"])
    assert first.suggested != first.given


def _tinted(colour: int, index: int) -> Image.Image:
    """A noisy picture whose dominant channel is `colour`: an easy class to learn."""
    rng = np.random.default_rng(7919 * colour + index)
    pixels = rng.integers(0, 90, (16, 16, 3))
    pixels[..., colour] += 140
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A cross-validated run whose 'green' folder holds four red pictures."""
    root = tmp_path_factory.mktemp("labels")
    data = root / "data"
    for colour, name in enumerate(("red", "green", "blue")):
        (data / name).mkdir(parents=True)
        for i in range(24):
            _tinted(colour, i).save(data / name / f"img {i}.png")
    wrong = set()
    for i in range(4):
        _tinted(0, 900 + i).save(data / "green" / f"stray {i}.png")
        wrong.add(f"green/stray {i}.png")
    run = run_yaml(root, "colours", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 16}}, split: {{folds: 3, test: 0.2}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 8, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0,
           label_issues: {{shown: 6}}}}
""")
    return run, wrong


def test_a_run_lists_the_planted_mislabelled_images(planted):
    run, wrong = planted
    found = json.loads((run / "data" / "label_issues.json").read_text())
    assert found["source"] == "out-of-fold" and found["model"] == "cnn"
    named = {row["id"] for row in found["issues"]}
    # The strays the test split did not take are all found, and little else is.
    scored = wrong & {row for row in _training_ids(run)}
    assert scored and scored <= named, (named, scored)
    assert len(named) <= len(scored) + 3
    for row in found["issues"]:
        if row["id"] in wrong:
            assert (row["given"], row["suggested"]) == ("green", "red")
    assert (run / "data" / "label_issues.png").stat().st_size > 1000
    report = (run / "report.html").read_text()
    assert "Label issues" in report and "stray" in report


def test_inspect_finds_them_again_from_the_finished_run(planted, capsys):
    run, _ = planted
    (run / "data" / "label_issues.json").unlink()
    assert main(["inspect", str(run), "--model", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "have a label the model disputes" in out and "model says red" in out
    assert (run / "data" / "label_issues.json").is_file()
    assert main(["inspect", str(run), "--model", "nope"]) == 2


def _training_ids(run: Path) -> list[str]:
    rows = (run / "cnn" / "predictions_val.csv").read_text().splitlines()[1:]
    return [row.split(",")[0] for row in rows]


def test_inspect_can_diagnose_the_test_labels_too(planted, capsys):
    run, _ = planted
    assert main(["inspect", str(run), "--model", "cnn", "--split", "test"]) == 0
    assert "test predictions of cnn" in capsys.readouterr().out
    found = json.loads((run / "data" / "label_issues_test.json").read_text())
    assert found["source"] == "test"
    test_ids = [row.split(",")[0] for row in
                (run / "cnn" / "predictions.csv").read_text().splitlines()[1:]]
    assert found["images_scored"] == len(test_ids)
    assert {row["id"] for row in found["issues"]} <= set(test_ids)
    report = (run / "report.html").read_text()
    assert "A diagnosis of the test labels" in report
    assert main(["inspect", str(run), "--split", "train"]) == 2
