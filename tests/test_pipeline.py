import json
import shutil

import numpy as np
import pytest

from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data
from visionbench.data.inspect import class_variance
from visionbench.errors import UserError


def data_config(**data):
    return config_from_dict({"data": data}).data


def test_folder_is_split_into_three_stratified_splits(class_folder):
    data = prepare_data(
        data_config(
            source="folder",
            path=str(class_folder),
            preprocess={"size": 16},
            split={"val": 0.25, "test": 0.25},
        )
    )
    assert data.record.splits == {
        "train": {"cat": 7, "dog": 7, "fox": 7},
        "val": {"cat": 2, "dog": 2, "fox": 2},  # 25 % of the 9 left after the test carve-out
        "test": {"cat": 3, "dog": 3, "fox": 3},
    }
    images, targets = data.arrays("test")
    assert images.shape == (9, 16, 16, 3) and sorted(targets.tolist()) == [
        0,
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        2,
    ]


def test_duplicates_across_splits_are_found(presplit_folder):
    # An exact copy and a re-encoded, resized copy of training images placed in Testing.
    from PIL import Image

    shutil.copy(
        presplit_folder / "Training/tumour/img 0.png", presplit_folder / "Testing/tumour/copy.png"
    )
    shutil.copy(
        presplit_folder / "Training/tumour/img 1.png", presplit_folder / "Training/tumour/dup.png"
    )
    near = Image.open(presplit_folder / "Training/healthy/img 3.png").resize((30, 30))
    near.convert("RGB").save(presplit_folder / "Testing/healthy/near.jpg", quality=90)
    data = prepare_data(
        data_config(source="presplit", path=str(presplit_folder), preprocess={"size": 24})
    )
    found = data.record.duplicates
    assert found.exact.across["train~test"].pairs == 1
    assert found.exact.within["train"].pairs == 1
    assert found.near.across["train~test"].images == 1
    assert found.exact.across["train~test"].examples == [
        ["Training/tumour/img 0.png", "Testing/tumour/copy.png"]
    ]
    assert any(w.code == "test_duplicates" and w.data["images"] == 2
               and "2 test image(s) duplicate" in w.message for w in data.record.warnings)
    # The within-train duplicate pair never straddles train and validation.
    pair = [data.ids.index("Training/tumour/img 1.png"), data.ids.index("Training/tumour/dup.png")]
    assert data.split[pair[0]] == data.split[pair[1]]

    dropped = prepare_data(
        data_config(
            source="presplit",
            path=str(presplit_folder),
            preprocess={"size": 24},
            duplicates={"policy": "drop_from_test"},
        )
    )
    assert sorted(dropped.record.duplicates.dropped_from_test) == [
        "Testing/healthy/near.jpg",
        "Testing/tumour/copy.png",
    ]
    assert dropped.record.totals["test"] == 9
    with pytest.raises(UserError, match=r"2 test image\(s\) duplicate.*policy is 'fail'"):
        prepare_data(
            data_config(
                source="presplit",
                path=str(presplit_folder),
                preprocess={"size": 24},
                duplicates={"policy": "fail"},
            )
        )


def test_near_candidates_whose_pixels_differ_are_not_duplicates(class_folder):
    from PIL import Image

    source = class_folder / "cat" / "img 0.png"
    copy = class_folder / "cat" / "resaved.jpg"
    Image.open(source).convert("RGB").resize((30, 30)).save(copy, quality=80)
    # The widest hash threshold makes hundreds of pairs candidates: only the resaved copy's
    # pixels agree with its source.
    data = prepare_data(data_config(source="folder", path=str(class_folder),
                                    preprocess={"size": 16}, split={"val": 0.0, "test": 0.0},
                                    duplicates={"near_threshold": 32}))
    found = data.record.duplicates
    assert found.near.within["train"].pairs == 1
    assert found.near.within["train"].examples == [["cat/img 0.png", "cat/resaved.jpg"]]
    assert found.near_candidates_rejected > 100
    assert found.near_similarity == 0.97


def test_test_class_missing_from_training(presplit_folder):
    from conftest import make_class_folders

    make_class_folders(
        presplit_folder / "Testing", {"healthy": 0, "tumour": 0, "zebra": 2}, offset=300
    )
    with pytest.raises(UserError, match=r"zebra have no training images"):
        prepare_data(
            data_config(source="presplit", path=str(presplit_folder), preprocess={"size": 24})
        )


def test_limit_per_class_and_pooling_given_splits(presplit_folder):
    data = prepare_data(
        data_config(
            source="presplit",
            path=str(presplit_folder),
            split={"limit_per_class": 3, "given": "pool", "val": 0.0, "test": 0.34},
        )
    )
    assert sum(data.record.totals.values()) == 12  # 3 per class per given split
    assert data.record.totals["test"] == 4
    # The record (and the report) say the test split was made here, not given.
    assert data.record.split_policy.test == 0.34
    from visionbench.data.describe import describe_splits

    assert describe_splits(data.record).startswith(
        "Splits: the source's splits (test 6, train 6) were pooled, then test 34% of all")
    kept = prepare_data(data_config(source="presplit", path=str(presplit_folder)))
    assert "test split is kept as given" in describe_splits(kept.record)
    # A folder written before the record said what was done: a pool beside a test split
    # "given" (the stored mnist run) is described, not a formatting error.
    older = data.record.model_copy(update={
        "split_policy": data.record.split_policy.model_copy(update={"test": "given"})})
    assert "test split is kept as given" in describe_splits(older)


def test_normalization_statistics_come_from_training_only(class_folder):
    data = prepare_data(
        data_config(
            source="folder",
            path=str(class_folder),
            preprocess={"size": 8, "normalize": "dataset", "color": "grayscale"},
        )
    )
    train, _ = data.arrays("train")
    norm = data.normalization()
    assert norm.mean[0] == pytest.approx(train.mean() / 255, rel=1e-6)
    assert norm.std[0] == pytest.approx(train.std() / 255, rel=1e-4)
    out = norm.apply(train)
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, rel=1e-3)


def test_gray3_repeats_grey_and_imagenet_fits_channels(class_folder):
    data = prepare_data(
        data_config(
            source="folder",
            path=str(class_folder),
            preprocess={"size": 8, "color": "gray3", "normalize": "imagenet"},
        )
    )
    images, _ = data.arrays("train")
    assert images.shape[-1] == 3 and (images[..., 0] == images[..., 2]).all()
    assert data.normalization().mean == (0.485, 0.456, 0.406)
    grey = prepare_data(
        data_config(
            source="folder",
            path=str(class_folder),
            preprocess={"size": 8, "color": "grayscale", "normalize": "imagenet"},
        )
    )
    assert grey.normalization().mean == pytest.approx((np.mean([0.485, 0.456, 0.406]),))


def test_class_variance_matches_brute_force(class_folder):
    data = prepare_data(
        data_config(
            source="folder",
            path=str(class_folder),
            preprocess={"size": 6, "color": "grayscale"},
            split={"val": 0.0, "test": 0.0},
        )
    )
    got = class_variance(data, ("train",))
    x, y = data.arrays("train")
    x = x.reshape(len(x), -1).astype(np.float64)
    mu = x.mean(0)
    intra = [((x[y == k] - x[y == k].mean(0)) ** 2).sum(1).mean() for k in range(3)]
    inter = sum((y == k).sum() * ((x[y == k].mean(0) - mu) ** 2).sum() for k in range(3))
    assert [v.intra_variance for v in got.per_class.values()] == pytest.approx(intra)
    assert got.inter_variance_study == pytest.approx(inter)
    assert got.ratio_study == pytest.approx(inter / sum(intra))
    within = sum((y == k).sum() * intra[k] for k in range(3))
    assert got.fisher_ratio == pytest.approx(inter / within)


def test_a_grey_model_reads_an_rgb_cache_as_pil_greys_it(class_folder):
    import torch

    from visionbench.models.build import build_model
    from visionbench.runtime.pipeline import InputPipeline
    from visionbench.schemas.inputs import InputSpec
    from visionbench.schemas.models import ModelConfig

    def prepared(color):
        return prepare_data(data_config(source="folder", path=str(class_folder),
                                        preprocess={"size": 8, "color": color,
                                                    "normalize": "dataset"}))

    rgb, grey = prepared("rgb"), prepared("grayscale")
    spec = InputSpec(size=(8, 8), channels=1, mean=(0.0,), std=(1.0,))
    pipeline = InputPipeline(spec, torch.device("cpu"))
    images, targets = rgb.arrays("train")
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    made_grey = pipeline(batch, torch.from_numpy(targets), train=False)
    cached_grey = torch.from_numpy(grey.arrays("train")[0]).permute(0, 3, 1, 2).float() / 255
    assert made_grey.shape == cached_grey.shape
    # The grey cache is rounded to whole levels before and after resizing: within 2 levels.
    assert (made_grey - cached_grey).abs().max() <= 2 / 255
    norm = rgb.normalization()
    layers = [{"type": "flatten"}, {"type": "dense", "units": 4}]
    built = build_model(ModelConfig(layers=layers, input={"channels": 1}), 3, (8, 8, 3),
                        norm.mean, norm.std)
    assert built.input.channels == 1 and len(built.input.mean) == 1
    assert built.input.mean[0] == pytest.approx(grey.normalization().mean[0], abs=2 / 255)


def test_every_skipped_file_is_listed_with_its_reason_in_the_report(class_folder, tmp_path):
    from visionbench.orchestrate import run_config
    from visionbench.rundir import DataRecord

    (class_folder / "cat" / "broken.png").write_bytes(b"not a png")
    (class_folder / "cat" / "notes.txt").write_text("hello")
    (class_folder / "dog" / "away.png").symlink_to(tmp_path / "nowhere.png")
    config = config_from_dict({
        "data": {"source": "folder", "path": str(class_folder), "preprocess": {"size": 8}},
        "models": {"m": {"preset": "mlp"}},
        "train": {"epochs": 1, "progress": "quiet"},
        "evaluate": {"bootstrap": 0, "robustness": {}, "explain": {"images": 0},
                     "error_examples": 0},
        "output": {"dir": str(tmp_path / "runs")}})
    lines: list[str] = []
    result = run_config(config, report=lines.append)
    assert "3 file(s) skipped (unreadable, not images, or links)" in lines[0]
    record = result.run.require(DataRecord)
    assert record.ignored_files.files == ["cat/notes.txt",
                                             "dog/away.png (a broken or looping link)"]
    report = result.run.report_file.read_text()
    assert "Skipped files (3)" in report
    for text in ("cat/broken.png", "cat/notes.txt", "not an image file", "dog/away.png",
                 "a broken or looping link"):
        assert text in report


def _npz_with_its_own_validation(path):
    rng = np.random.default_rng(0)

    def part(n):
        labels = np.arange(n) % 2
        images = (rng.random((n, 12, 12)) * 60 + labels[:, None, None] * 150).astype(np.uint8)
        return images, labels

    arrays = {}
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = part(n)
    np.savez(path, **arrays)
    return path


def test_a_source_with_its_own_validation_split_is_described_as_given(tmp_path):
    from visionbench.data.describe import describe_splits

    path = _npz_with_its_own_validation(tmp_path / "own.npz")
    data = prepare_data(data_config(source="npz", path=str(path), class_names=["a", "b"],
                                    duplicates={"near": False}))
    assert data.record.totals == {"train": 24, "val": 8, "test": 8}
    sentence = describe_splits(data.record)
    assert sentence == "Splits: the source's test and validation splits are kept as given and " \
        "untouched."
    assert "20%" not in sentence and "seed" not in sentence


def test_a_limited_run_says_so_wherever_counts_appear(class_folder, tmp_path):
    from visionbench.orchestrate import run_config

    config = config_from_dict({
        "output": {"dir": str(tmp_path / "runs"), "name": "limited"},
        "data": {"source": "folder", "path": str(class_folder), "preprocess": {"size": 8},
                 "split": {"limit_per_class": 5, "val": 0.2, "test": 0.4}},
        "models": {"m": {"preset": "mlp"}},
        "train": {"epochs": 1, "progress": "quiet"},
        "evaluate": {"bootstrap": 0, "robustness": {}, "explain": {"images": 0}},
    })
    result = run_config(config, report=lambda _: None)
    policy = json.loads((result.folder / "data.json").read_text())["split_policy"]
    assert policy["limit_per_class"] == 5
    assert policy["before_limit"] == {"cat": 12, "dog": 12, "fox": 12}
    report = (result.folder / "report.html").read_text()
    sentence = ("Limited to 5 images per class and source split (split.limit_per_class): "
                "15 images used of 36 labelled (cat 12, dog 12, fox 12)")
    # Once in the summary, once above the counts table.
    assert report.count(sentence) == 2


def test_the_report_shows_duplicate_pairs_side_by_side_and_says_how_ids_read(presplit_folder,
                                                                            tmp_path):
    from visionbench.orchestrate import run_config

    shutil.copy(presplit_folder / "Training/tumour/img 0.png",
                presplit_folder / "Testing/tumour/copy.png")
    config = config_from_dict({
        "output": {"dir": str(tmp_path / "runs"), "name": "dups"},
        "data": {"source": "presplit", "path": str(presplit_folder),
                 "preprocess": {"size": 16}},
        "models": {"m": {"preset": "mlp"}},
        "train": {"epochs": 1, "progress": "quiet"},
        "evaluate": {"bootstrap": 0, "robustness": {}, "explain": {"images": 0}},
    })
    result = run_config(config, report=lambda _: None)
    assert (result.folder / "data" / "duplicate_pairs.png").is_file()
    report = (result.folder / "report.html").read_text()
    assert 'alt="example duplicate pairs"' in report
    assert ("Image ids: file paths relative to the data folder (or as the manifest lists "
            "them).") in report
    assert "whose grey pixels also correlate at least 0.97" in report
