"""Image-quality issues (issue 27 §3): cleanvision's checks on the decoded images and the
source files' facts, grey stored as colour, counts per split and class, and each model's
accuracy on the test images that have an issue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_class_folders, pattern, run_yaml


def _troubled_folder(root: Path) -> Path:
    """Two classes of patterns; in each, six nearly black images, two very wide ones and
    two grey images saved as RGB."""
    make_class_folders(root, {"cat": 30, "dog": 30})
    for label, name in enumerate(("cat", "dog")):
        for i in range(6):
            pixels = np.asarray(pattern(label, 300 + i)).astype(float) * 0.04
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"dark {i}.png")
        for i in range(2):
            pattern(label, 400 + i).resize((120, 24)).save(root / name / f"wide {i}.png")
            grey = pattern(label, 500 + i).convert("L").convert("RGB")
            grey.save(root / name / f"grey {i}.png")
    return root


@pytest.fixture(scope="module")
def troubled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality")
    data = _troubled_folder(root / "data")
    return run_yaml(root, "quality", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 24}}}}
models:
  mlp: {{preset: mlp}}
train: {{epochs: 1, progress: quiet, seed: 0}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")


def test_the_inspection_counts_each_issue_per_split_and_class(troubled_run):
    quality = json.loads((troubled_run / "data" / "inspect.json").read_text())["quality"]
    issues = quality["issues"]
    assert quality["images"] == 80
    assert issues["dark"]["images"] == 12
    assert issues["odd_aspect_ratio"]["images"] == 4
    # The wide files' aspect comes from the files, not from the square decoded images.
    assert all("wide" in image_id for image_id in issues["odd_aspect_ratio"]["examples"])
    assert issues["grey_as_colour"]["images"] >= 4
    counts = issues["dark"]["counts"]
    assert sum(sum(per_class.values()) for per_class in counts.values()) == 12
    assert set(counts) <= {"train", "val", "test"}
    assert len(issues["dark"]["test_ids"]) == sum(counts.get("test", {}).values())
    assert (troubled_run / "data" / "quality_dark.png").is_file()


def test_each_model_is_scored_on_the_test_images_with_each_issue(troubled_run):
    segments = json.loads((troubled_run / "mlp" / "segments.json").read_text())
    inspection = json.loads((troubled_run / "data" / "inspect.json").read_text())
    dark = next(row for row in segments["quality"] if row["property"] == "dark")
    assert dark["images"] == len(inspection["quality"]["issues"]["dark"]["test_ids"])
    assert 0 <= dark["accuracy"]["low"] <= dark["accuracy"]["value"] <= dark["accuracy"]["high"]
    page = (troubled_run / "report.html").read_text()
    section = page[page.index('id="quality"'):]
    assert "too dark" in section and "odd aspect ratio" in section
    assert "mlp: test accuracy" in section


def test_cleanvision_never_opens_a_file(tmp_path, monkeypatch):
    """It is given decoded pixels and the files' facts: a file it opened itself could be
    one of Pillow's formats that runs a program (EPS through Ghostscript)."""
    import PIL.Image

    from visionbench.config import load_config
    from visionbench.data.dataset import prepare_data
    from visionbench.data.quality import image_quality

    data = make_class_folders(tmp_path / "data", {"a": 12, "b": 12})
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: folder, path: {data}, preprocess: {{size: 16}}}}\n"
                      "models: {m: {preset: mlp}}\n")
    prepared = prepare_data(load_config(config).data)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a file was opened: {args}")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    found = image_quality(prepared, tmp_path)
    assert found.images == 24 and set(found.issues) >= {"dark", "blurry", "odd_size"}


def test_a_document_cannot_name_the_picture_the_report_embeds():
    from visionbench.data.quality import quality_chart

    with pytest.raises(ValueError, match="not an image-quality issue"):
        quality_chart(Path("data"), "../../secret")
