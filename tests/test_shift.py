"""Shift between splits and in new batches (issue 27 §2): a kernel two-sample test on a
generic embedding with a permutation p-value, the image properties that moved, the
sentence beside the headline, and `predict --check-shift`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_class_folders, run_yaml
from visionbench.cli import main
from visionbench.evaluate.shift import (
    Pixels,
    brightness,
    colourfulness,
    distinguishability,
    mmd_test,
    moved,
    pixel_properties,
    property_shifts,
    sharpness,
)


def test_the_two_sample_test_false_alarms_at_about_its_alpha_on_random_splits():
    """Under the null (one sample split at random) p < 0.05 about 5 % of the time: the
    permutation test is exact, whatever the embedding."""
    rng = np.random.default_rng(3)
    p_values = []
    for seed in range(300):
        pooled = rng.normal(size=(60, 6))
        p_values.append(mmd_test(pooled[:30], pooled[30:], 99, seed).p_value)
    rate = float(np.mean(np.array(p_values) < 0.05))
    assert 0.02 <= rate <= 0.09, rate


def test_the_two_sample_test_finds_a_small_shift_and_the_classifier_sees_it():
    rng = np.random.default_rng(4)
    reference, other = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    other[:, 0] += 0.8
    assert mmd_test(reference, other, 200).p_value < 0.01
    assert distinguishability(reference, other) > 0.6
    assert 0.35 < distinguishability(reference, rng.normal(size=(200, 16))) < 0.65


def _images(values: list[np.ndarray]) -> Pixels:
    return Pixels(np.stack([v.astype(np.uint8) for v in values]))


def test_properties_read_what_they_name():
    rng = np.random.default_rng(0)
    black, white = np.zeros((16, 16, 3)), np.full((16, 16, 3), 255)
    noise = rng.integers(0, 256, (16, 16, 3))
    assert brightness(_images([black, white])).tolist() == pytest.approx([0, 1])
    grey = np.repeat(noise[..., :1], 3, axis=-1)
    assert colourfulness(_images([grey]))[0] == pytest.approx(0, abs=1e-6)
    assert colourfulness(_images([noise]))[0] > 0.3
    stripes = np.zeros((16, 16, 1))
    stripes[:, ::2] = 255
    blurred = np.full((16, 16, 1), 127)
    assert sharpness(_images([stripes]))[0] > 100 * max(sharpness(_images([blurred]))[0], 1e-9)


def test_properties_equal_their_float_definitions():
    # The shared views (channel planes, integer sums) are a speed-up, not a new definition.
    images = np.random.default_rng(1).integers(0, 256, (5, 23, 17, 3), dtype=np.uint8)
    rgb = images.astype(np.float64) / 255
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    red_green = rgb[..., 0] - rgb[..., 1]
    yellow_blue = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    laplacian = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1]
                 + grey[:, 2:, 1:-1] - 4 * grey[:, 1:-1, 1:-1])
    expected = {
        "brightness": grey.mean(axis=(1, 2)), "contrast": grey.std(axis=(1, 2)),
        "sharpness": laplacian.var(axis=(1, 2)),
        "colourfulness": np.hypot(red_green.std(axis=(1, 2)), yellow_blue.std(axis=(1, 2)))
        + 0.3 * np.hypot(red_green.mean(axis=(1, 2)), yellow_blue.mean(axis=(1, 2))),
    }
    found = pixel_properties(images, batch=2)
    for name, values in expected.items():
        assert found[name] == pytest.approx(values, rel=1e-5), name


def test_property_shifts_put_the_largest_first_and_moved_corrects_for_the_number_tried():
    rng = np.random.default_rng(1)
    reference = {"a": rng.normal(size=400), "b": rng.normal(size=400), "flat": np.ones(400)}
    other = {"a": rng.normal(size=400) + 1.0, "b": rng.normal(size=400) + 0.12,
             "flat": np.ones(400)}
    shifts = property_shifts(reference, other)
    assert shifts[0].name == "a" and shifts[-1].distance == 0.0
    assert [s.name for s in moved(shifts, 0.05, 0.1)] == ["a"]
    # A significant but tiny move does not count as moved.
    assert [s.name for s in moved(shifts, 0.05, 0.9)] == []


def _darkened(source: Path, target: Path, factor: float) -> Path:
    for path in source.rglob("*.png"):
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(Image.open(path)).astype(float) * factor
        Image.fromarray(pixels.astype(np.uint8)).save(out)
    return target


CONFIG = """
data: {{source: {source}, path: {path}, preprocess: {{size: 16}}{split}}}
models:
  mlp: {{preset: mlp}}
train: {{epochs: 1, progress: quiet, seed: 0}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0{more}}}
"""


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Testing images darker than the Training images (as the chest X-ray's test exposures
    differ from its training ones)."""
    root = tmp_path_factory.mktemp("shifted")
    make_class_folders(root / "mri" / "Training", {"healthy": 40, "tumour": 40})
    _darkened(make_class_folders(root / "bright", {"healthy": 15, "tumour": 15}, offset=100),
              root / "mri" / "Testing", 0.6)
    return run_yaml(root, "shifted", CONFIG.format(source="presplit", path=root / "mri",
                                                   split="", more=""))


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("random")
    data = make_class_folders(root / "data", {"cat": 40, "dog": 40})
    return run_yaml(root, "random", CONFIG.format(source="folder", path=data, split="",
                                                  more=""))


def _shift(run: Path) -> dict:
    return json.loads((run / "shift.json").read_text())


def test_a_darker_test_split_is_found_shifted_and_the_summary_says_so(shifted_run):
    found = _shift(shifted_run)["splits"]
    assert found["test"]["shifted"] and not found["val"]["shifted"]
    assert found["test"]["auc"] > 0.9
    top = found["test"]["properties"][0]
    assert top["name"] in ("brightness", "contrast") and top["moved"]
    brightness_row = next(r for r in found["test"]["properties"] if r["name"] == "brightness")
    assert brightness_row["other"][1] < brightness_row["reference"][1]
    page = (shifted_run / "report.html").read_text()
    summary = page[page.index('id="summary"'):page.index('id="leaderboard"')]
    assert "The test images differ from the training images" in summary
    assert "overstate" in summary and 'id="shift"' in page


def test_a_random_split_is_not_found_shifted_and_the_summary_stays_quiet(random_run):
    found = _shift(random_run)["splits"]
    assert not found["test"]["shifted"] and not found["val"]["shifted"]
    page = (random_run / "report.html").read_text()
    assert "differ from the training images" not in page


def test_the_training_sample_is_saved_without_pickle_and_checked_when_read(random_run,
                                                                           tmp_path, capsys):
    import shutil

    raw = (random_run / "shift_reference.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert "embedding" in header and "property:brightness" in header
    copy = tmp_path / "run"
    shutil.copytree(random_run, copy)
    (copy / "shift_reference.safetensors").write_bytes(raw[:-8] + b"\0" * 8)
    capsys.readouterr()
    assert main(["predict", str(copy), str(random_run.parents[2] / "data"),
                 "--check-shift"]) == 2
    assert "does not match shift.json" in capsys.readouterr().err


def test_predict_check_shift_tells_a_darker_batch_from_a_familiar_one(random_run, tmp_path,
                                                                       capsys):
    data = random_run.parents[2] / "data"
    capsys.readouterr()
    assert main(["predict", str(random_run), str(data), "--check-shift",
                 "--out", str(tmp_path / "same.csv")]) == 0
    said = capsys.readouterr().err
    assert "shift: these 80 images (a sample of" in said and "look like the training" in said
    dark = _darkened(data, tmp_path / "dark", 0.5)
    assert main(["predict", str(random_run), str(dark), "--check-shift",
                 "--out", str(tmp_path / "dark.csv")]) == 0
    said = capsys.readouterr().err
    assert "differ from the training images" in said
    assert "brightness: median" in said and "moved" in said


def test_check_shift_refuses_too_few_images_an_export_and_a_run_without_a_sample(
        random_run, tmp_path, capsys):
    data = random_run.parents[2] / "data"
    few = sorted((data / "cat").iterdir())[:5]
    assert main(["predict", str(random_run), *map(str, few), "--check-shift"]) == 2
    assert "needs at least 20 readable images" in capsys.readouterr().err
    root = tmp_path / "off"
    root.mkdir()
    off = run_yaml(root, "off", CONFIG.format(source="folder", path=data, split="",
                                              more=", shift: null, unfamiliar: null"))
    assert not (off / "shift.json").exists()
    capsys.readouterr()
    assert main(["predict", str(off), str(data), "--check-shift"]) == 2
    assert "holds no training sample" in capsys.readouterr().err
    pytest.importorskip("onnxscript")
    assert main(["export", str(off), "--out", str(tmp_path / "export")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "export"), str(data), "--check-shift"]) == 2
    assert "an export does not hold" in capsys.readouterr().err


def test_weak_bins_find_the_bin_that_fails_and_correct_for_every_bin_tried():
    from visionbench.evaluate.segments import bin_edges, holm, weak_bins

    rng = np.random.default_rng(5)
    darkness = rng.uniform(size=600)
    # Right 90 % of the time, except in the darkest tenth (50 %).
    correct = rng.uniform(size=600) > np.where(darkness < 0.1, 0.5, 0.1)
    edges = {"brightness": bin_edges(rng.uniform(size=1000), 10), "noise": np.array([0.5])}
    found = weak_bins({"brightness": darkness, "noise": rng.uniform(size=600)}, edges,
                      correct, 0.05)
    assert len(found) == 12
    assert [(row.name, row.bin) for row in found if row.weak] == [("brightness", 0)]
    assert all(row.adjusted >= row.p_value for row in found)
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]


def test_segments_take_their_edges_from_training_and_test_never_moves_them(random_run):
    from visionbench.evaluate.segments import bin_edges
    from visionbench.evaluate.shift import PROPERTIES

    found = json.loads((random_run / "mlp" / "segments.json").read_text())
    assert {row["property"] for row in found["rows"]} <= set(PROPERTIES.names()) | {
        "source size", "aspect ratio"}
    assert sum(row["images"] for row in found["rows"] if row["property"] == "brightness") \
        == 16, "every test image falls in one brightness bin"
    uppers = [row["high"] for row in found["rows"] if row["property"] == "brightness"][:-1]
    # The edges are the quartiles of (a sample of) the training images' brightness.
    from visionbench.config import load_config
    from visionbench.data.dataset import prepare_data

    data = prepare_data(load_config(random_run / "config.yaml").data)
    train = data.positions("train")
    expected = bin_edges(brightness(Pixels(np.asarray(data.images[data.index[train]]))), 4)
    assert np.allclose(uppers, expected)


def test_the_report_names_a_weak_segment_with_its_interval(random_run, tmp_path):
    import shutil

    from visionbench.report.build import write_report
    from visionbench.rundir.documents import Interval, SegmentRow, Segments
    from visionbench.rundir.layout import RunFolder

    copy = tmp_path / "run"
    shutil.copytree(random_run, copy)
    folder = RunFolder(copy)
    weak = SegmentRow(property="brightness", bin=0, low=None, high=0.31, images=40,
                      accuracy=Interval(value=0.61, low=0.52, high=0.70), p_value=0.001,
                      adjusted=0.004, weak=True)
    folder.model("mlp").write(Segments(primary_metric="accuracy", bins=4, alpha=0.05,
                                       accuracy=Interval(value=0.84, low=0.8, high=0.88),
                                       rows=[weak]))
    page = write_report(folder).read_text()
    section = page[page.index('id="weak-segments"'):]
    assert "brightness below 0.31" in section and "0.610 [0.520, 0.700]" in section


def test_inspect_tests_the_splits_for_shift_before_any_training(shifted_run, tmp_path,
                                                                 capsys):
    config = tmp_path / "inspect.yaml"
    config.write_text(CONFIG.format(source="presplit", path=shifted_run.parents[2] / "mri",
                                    split="", more="")
                      + f"output: {{dir: {tmp_path / 'out'}}}\n")
    capsys.readouterr()
    assert main(["inspect", str(config), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["shift"]["splits"]["test"]["shifted"]
    assert "dark" in found["quality"]["issues"]
    assert main(["inspect", str(config), "--out", str(tmp_path / "again")]) == 0
    assert "shift: the test images differ from the training images" in capsys.readouterr().out


def test_a_run_says_a_shifted_split_before_training(shifted_run, tmp_path):
    from visionbench.config import load_config
    from visionbench.orchestrate import run_config

    config = tmp_path / "again.yaml"
    config.write_text(CONFIG.format(source="presplit", path=shifted_run.parents[2] / "mri",
                                    split="", more="")
                      + f"output: {{dir: {tmp_path / 'out'}}}\n")
    said: list[str] = []
    run_config(load_config(config), report=said.append)
    warning = next(line for line in said if "differ from the training images" in line)
    assert warning.startswith("warning: the test images differ")
    assert said.index(warning) < next(i for i, line in enumerate(said)
                                      if line.startswith("mlp: 1 epochs"))
