"""`source: hf_dataset`: datasets written here with the `datasets` package (never
downloaded) read back like a folder source: `save_to_disk` folders (a dataset dict and a lone
dataset), Parquet files in the Hub's layout, class names from ClassLabel, splits kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_class_folders
from visionbench.cli import main
from visionbench.config import load_config
from visionbench.data.dataset import prepare_data
from visionbench.errors import UserError

datasets = pytest.importorskip("datasets")

CLASSES = ["cat", "dog", "fox"]


def _folder_as_dataset(folder) -> dict[str, object]:
    """The class folder's images as a `datasets` dict of columns (encoded PNG bytes) with
    the names of their files, in a stable order."""
    files = sorted(p for p in folder.rglob("*.png"))
    return {"image": [{"bytes": p.read_bytes(), "path": None} for p in files],
            "label": [CLASSES.index(p.parent.name) for p in files],
            "name": [p.relative_to(folder).as_posix() for p in files]}


def _features():
    return datasets.Features({"image": datasets.Image(),
                              "label": datasets.ClassLabel(names=CLASSES),
                              "name": datasets.Value("string")})


@pytest.fixture
def pictures(tmp_path):
    return make_class_folders(tmp_path / "folder", {"cat": 12, "dog": 12, "fox": 12})


def _settings(path, *more):
    return ["data.source=hf_dataset", f"data.path={path}", "data.preprocess.size=24",
            "data.preprocess.color=rgb", *more]


def test_a_saved_dataset_decodes_to_the_pixels_of_the_same_images_in_folders(tmp_path,
                                                                          pictures):
    columns = _folder_as_dataset(pictures)
    datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(tmp_path / "saved")
    from_hf = prepare_data(load_config("quickstart", _settings(tmp_path / "saved")).data)
    from_folder = prepare_data(load_config("quickstart", [
        "data.source=folder", f"data.path={pictures}", "data.preprocess.size=24",
        "data.preprocess.color=rgb"]).data)
    assert from_hf.classes == CLASSES == from_folder.classes
    # Row n is the n-th file in name order: the same image decodes to the same pixels.
    by_row = {f"{n}": name for n, name in enumerate(columns["name"])}
    for position, image_id in enumerate(from_hf.ids):
        mine = from_hf.images[from_hf.index[position]]
        theirs = from_folder.images[from_folder.index[from_folder.ids.index(by_row[image_id])]]
        np.testing.assert_array_equal(mine, theirs)
    assert from_hf.record.ids_note.startswith("<split>/<n> is row n")


def test_a_dataset_dicts_splits_are_kept_and_unlabelled_rows_left_out(tmp_path, pictures):
    columns = _folder_as_dataset(pictures)
    whole = datasets.Dataset.from_dict(columns, features=_features())
    # A competition's split: three rows without a label (-1), three with one.
    hidden = whole.select(range(6)).map(
        lambda row, number: {"label": -1 if number < 3 else row["label"]}, with_indices=True)
    datasets.DatasetDict({"train": whole.select(range(0, 36, 2)),
                          "validation": whole.select(range(1, 36, 4)),
                          "test": whole.select(range(3, 36, 4)),
                          "unsupervised": whole.select(range(4)),
                          "competition": hidden}).save_to_disk(tmp_path / "dict")
    data = prepare_data(load_config("quickstart", _settings(
        tmp_path / "dict", "data.split.given=keep")).data)
    assert sorted(set(data.split.tolist())) == ["test", "train", "val"]
    assert (data.split == "train").sum() == 18 and (data.split == "test").sum() == 9
    assert all(i.startswith("validation/") for i in np.asarray(data.ids)[data.split == "val"])
    ignored = data.record.ignored_files
    assert any("unsupervised" in entry for entry in ignored.listed)
    mapped = prepare_data(load_config("quickstart", _settings(
        tmp_path / "dict", "data.splits={train: train, test: competition}")).data)
    tested = sorted(np.asarray(mapped.ids)[mapped.split == "test"].tolist())
    assert tested == ["competition/3", "competition/4", "competition/5"]
    assert "3 row(s) of competition without a label" in mapped.record.ignored_files.listed


def test_parquet_files_in_the_hubs_layout_train_like_a_folder(tmp_path, pictures, capsys):
    columns = _folder_as_dataset(pictures)
    whole = datasets.Dataset.from_dict(columns, features=_features())
    shards = tmp_path / "hub" / "data"
    shards.mkdir(parents=True)
    whole.select(range(0, 36, 3)).to_parquet(shards / "test-00000-of-00001.parquet")
    train = [i for i in range(36) if i % 3]
    whole.select(train[:12]).to_parquet(shards / "train-00000-of-00002.parquet")
    whole.select(train[12:]).to_parquet(shards / "train-00001-of-00002.parquet")
    config = tmp_path / "hub.yaml"
    config.write_text(f"""
data:
  source: hf_dataset
  path: {tmp_path / 'hub'}
  preprocess: {{size: 24}}
  split: {{val: 0.25}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 1, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0,
           unfamiliar: null, shift: null, segments: null}}
output: {{dir: {tmp_path / 'runs'}}}
""")
    assert main(["run", str(config)]) == 0
    run = next((tmp_path / "runs" / "hub").iterdir())
    record = json.loads((run / "data.json").read_text())
    assert record["classes"] == CLASSES and record["totals"]["test"] == 12
    assert record["totals"]["train"] + record["totals"]["val"] == 24


def test_a_missing_column_and_a_missing_extra_say_what_to_do(tmp_path, pictures, monkeypatch):
    columns = _folder_as_dataset(pictures)
    datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(tmp_path / "saved")
    with pytest.raises(UserError, match=r"no column 'img' \(columns: image, label, name\)"):
        prepare_data(load_config("quickstart", _settings(
            tmp_path / "saved", "data.image_column=img")).data)
    with pytest.raises(UserError, match="not an Image feature"):
        prepare_data(load_config("quickstart", _settings(
            tmp_path / "saved", "data.image_column=name")).data)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'visionbench\[hf\]'"):
        load_config("quickstart", _settings(tmp_path / "saved"))


def test_a_row_that_is_not_an_image_is_skipped_with_its_reason(tmp_path, pictures):
    columns = _folder_as_dataset(pictures)
    columns["image"][5] = {"bytes": b"not an image at all", "path": None}
    columns["image"][6] = {"bytes": b"\x89PNG\r\n\x1a\n", "path": None}  # cut short
    datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(tmp_path / "saved")
    data = prepare_data(load_config("quickstart", _settings(tmp_path / "saved")).data)
    assert len(data.ids) == 34
    failures = data.record.failures
    assert set(failures) == {"5", "6"} and "not an image" in failures["5"]
