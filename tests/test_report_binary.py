"""The report of a binary run on data the project never saw: a 28 px grey `.npz` with its
own validation split, a small CNN and a pretrained backbone that enlarges the images. Every
statement the report makes must be true of that run, and its charts readable."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_yaml
from test_report import layout_problems
from visionbench.cli import main


def _binary_npz(path: Path) -> Path:
    """Two classes of 28 px grey images: a bright blob on the right side is 'pneumonia'."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 80), ("val", 30), ("test", 40)):
        labels = np.arange(n) % 2
        images = rng.normal(70, 25, (n, 28, 28))
        images[labels == 1, 8:20, 15:25] += 90
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("binary")
    data = _binary_npz(out / "xray.npz")
    return run_yaml(out, "xray", f"""
data:
  source: npz
  path: {data}
  class_names: [normal, pneumonia]
  preprocess: {{size: 28, color: grayscale}}
models:
  cnn: {{preset: mnist_baseline}}
  lite0:
    backbone: efficientnet_lite0
    pretrained: true
    input: {{size: 96}}
    train: {{batch_size: 16}}
train: {{epochs: 2, progress: quiet, seed: 0}}
evaluate:
  bootstrap: 200
  robustness: {{noise: [0.05, 0.2], rotation: [15]}}
  explain: {{images: 2, steps: 4, samples: 2}}
  error_examples: 4
  references: {{earlier: {{accuracy: 0.6, roc_auc_macro: 0.7, source: "an earlier run"}}}}
""")


def _text(folder: Path) -> str:
    return html.unescape((folder / "report.html").read_text())


def figures(page: str) -> list[tuple[list[dict], dict]]:
    """(traces, layout) of every chart of a report page, in page order."""
    decoder = json.JSONDecoder()
    found = []
    for line in page.splitlines():
        if line.startswith("Plotly.newPlot("):
            start = line.index(",") + 1
            traces, end = decoder.raw_decode(line, start + 1)
            layout, _ = decoder.raw_decode(line, end + 2)
            found.append((traces, layout))
    return found


def test_binary_report_names_the_positive_class_once_with_intervals(binary_run):
    page = _text(binary_run)
    assert "pneumonia (pneumonia)" not in page
    summary = page.split('id="leaderboard"')[0]
    reading = re.search(r"Positive class pneumonia at argmax: sensitivity ([^;]+);", summary)
    assert reading and "[" in reading.group(1), "the clinical line carries its interval"
    assert page.count("is chosen on the validation split only") == 2  # one per model table


def test_binary_roc_draws_the_positive_class_only(binary_run):
    rocs = [traces for traces, layout in figures((binary_run / "report.html").read_text())
            if layout["title"]["text"].startswith("ROC")]
    assert len(rocs) == 2
    for traces in rocs:
        names = [trace["name"] for trace in traces]
        assert len(names) == 2 and names[0].startswith("pneumonia (AUC") and names[1] == "chance"


def test_binary_report_states_what_was_done_and_flags_upsampling(binary_run):
    page = _text(binary_run)
    assert "the source's test and validation splits are kept as given" in page
    assert "Image ids: <split>/<n> is row n (from 0) of that split's image array" in page
    assert "<figcaption>normal</figcaption>" in page, "each row of samples names its class"
    assert "<figcaption>pneumonia</figcaption>" in page
    assert "20%" not in page.split("<main>")[1].split("</main>")[0]
    lite0 = page.split('id="model-lite0"')[1].split("<h2")[0]
    cnn = page.split('id="model-cnn"')[1].split("<h2")[0]
    assert "Input: 96×96 px, 3 channel(s), mean 0.485, 0.456, 0.406" in lite0
    assert "upsampled 3.4×" in lite0 and "upsampled" not in cnn
    assert "Input: 28×28 px, 1 channel(s)" in cnn


def test_robustness_axes_show_the_severity_values_with_their_unit(binary_run):
    traces, layout = next(found for found in figures((binary_run / "report.html").read_text())
                          if found[1]["title"]["text"].startswith("Robustness"))
    assert [trace["x"] for trace in traces] == [[0.05, 0.2], [15.0]]
    assert layout["xaxis"]["title"]["text"] == "noise σ (pixels 0–1)"
    assert layout["xaxis2"]["title"]["text"] == "rotation (degrees)"


def test_binary_charts_have_no_overlapping_or_clipped_text(binary_run, tmp_path):
    problems, console = layout_problems(binary_run / "report.html", tmp_path)
    assert console == [], console
    assert problems == []


def test_a_map_no_better_than_random_is_flagged_as_not_evidence(binary_run, tmp_path):
    import shutil

    from visionbench.rundir import Explanations, RunFolder

    copy = tmp_path / "run"
    shutil.copytree(binary_run, copy)
    folder = RunFolder(copy).model("cnn")
    found = folder.require(Explanations)
    found.deletion = {"random": 0.40, "gradcam": 0.55, "occlusion": 0.10}
    folder.write(found)
    assert main(["report", str(copy)]) == 0
    page = _text(copy)
    cnn = page.split('id="model-cnn"')[1].split("<h2")[0]
    assert "Not faithful for this model: gradcam removes the pixels it marks" in cnn
    assert "<td>gradcam</td><td>0.550</td><td>no better than random</td>" in cnn
    assert "<td>occlusion</td><td>0.100</td><td>better than random</td>" in cnn


def test_the_report_says_how_the_pretrained_weights_were_loaded(binary_run):
    lite0 = _text(binary_run).split('id="model-lite0"')[1].split("<h2")[0]
    assert "weights from ImageNet weights of an installed package" in lite0
    assert "tensors loaded (by name, EfficientNet-PyTorch names mapped" in lite0
    assert "tensor order" not in lite0


def test_references_are_rows_of_the_leaderboard_and_each_model_is_tested_against_them(
        binary_run):
    page = _text(binary_run)
    assert '<tr class="reference"><td>earlier</td><td>reference</td><td>0.6000</td>' in page
    assert "<h3>Against earlier (an earlier run)</h3>" in page
    summary = page.split('id="leaderboard"')[0]
    assert re.search(r"Against earlier \(accuracy 0\.6000, an earlier run\): (better|no "
                     r"significant difference|worse) \(one-sided exact binomial p = ", summary)
    board = (binary_run / "leaderboard.md").read_text()
    assert "| earlier | reference | 0.6000 |" in board


def test_the_api_explains_with_the_runs_most_faithful_method(binary_run):
    import visionbench
    from visionbench.rundir import Explanations, RunFolder

    deletion = RunFolder(binary_run).model("lite0").require(Explanations).deletion
    best = min((m for m in deletion if m != "random"), key=deletion.__getitem__)
    picture = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    found = visionbench.load(binary_run, "lite0").explain(picture)
    assert found.method == best and found.faithful == (deletion[best] < deletion["random"])
    assert found.map.shape == (96, 96) and found.image.shape == (96, 96, 3)


def test_a_wide_folds_leaderboard_with_a_reference_fits_the_page_at_1400_px(tmp_path):
    # Three models with long names, a reference, missed positives and cross-validation: the
    # widest leaderboard a binary run draws. Its headers wrap at `_` instead of pushing the
    # "vs recommended" column past the page's right edge (it was 1291 px in 1250).
    data = _binary_npz(tmp_path / "xray.npz")
    run = run_yaml(tmp_path, "wide", f"""
data:
  source: npz
  path: {data}
  class_names: [normal, pneumonia]
  preprocess: {{size: 28, color: grayscale}}
  split: {{folds: 3}}
models:
  cnn_baseline_model: {{preset: mnist_baseline}}
  mlp_with_a_long_name: {{preset: mlp}}
  another_cnn: {{layers: [{{type: conv, filters: 4}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 2, progress: quiet, seed: 0}}
evaluate:
  bootstrap: 100
  explain: {{images: 0}}
  error_examples: 0
  references: {{earlier: {{accuracy: 0.6, roc_auc_macro: 0.7, source: "an earlier run"}}}}
""")
    assert "<th>balanced_<wbr>accuracy</th>" in (run / "report.html").read_text()
    problems, console = layout_problems(run / "report.html", tmp_path)
    assert console == [], console
    assert problems == []
