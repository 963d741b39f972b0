import gzip
import struct

import numpy as np
import pytest

from conftest import make_class_folders, pattern
from visionbench.data.sources import SOURCES, DataSource, read_idx
from visionbench.errors import UserError


def source(kind: str, **fields) -> DataSource:
    return SOURCES.get(kind).model_validate({"source": kind, **fields})


def test_every_registered_source_is_tested_here():
    # hf_dataset registers from its own module; tests/test_hf_dataset.py tests it.
    import visionbench.data.hf_dataset  # noqa: F401

    assert SOURCES.names() == ["csv", "digits", "folder", "hf_dataset", "idx", "npz",
                               "presplit", "torchvision"]


def test_folder_lists_images_and_counts_other_files(class_folder):
    (class_folder / "cat" / "notes.txt").write_text("not an image")
    (class_folder / "README.md").write_text("hello")
    (class_folder / "dog" / ".hidden.png").write_bytes(b"x")
    data = source("folder", path=class_folder).load()
    assert len(data.ids) == 36
    assert sorted(set(data.labels)) == ["cat", "dog", "fox"]
    assert set(data.splits) == {None}
    assert sorted(data.ignored) == ["README.md", "cat/notes.txt"]
    assert "cat/img 0.png" in data.ids


def test_folder_empty_class_is_an_error(class_folder):
    (class_folder / "empty").mkdir()
    with pytest.raises(UserError, match=r"class folder .*empty has no images"):
        source("folder", path=class_folder).load()


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"data folder not found.*set data.path"):
        source("folder", path=tmp_path / "nowhere").load()


def test_presplit_recognises_folder_names(presplit_folder):
    data = source("presplit", path=presplit_folder).load()
    assert data.splits.count("train") == 36 and data.splits.count("test") == 9


def test_presplit_configured_names(tmp_path):
    make_class_folders(tmp_path / "fit", {"a": 3, "b": 3})
    make_class_folders(tmp_path / "hold", {"a": 2, "b": 2})
    data = source("presplit", path=tmp_path, splits={"train": "fit", "test": "hold"}).load()
    assert data.splits.count("test") == 4
    with pytest.raises(UserError, match=r"no training folder"):
        source("presplit", path=tmp_path).load()


def test_npz_medmnist_and_keras_keys(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (10, 8, 8), dtype=np.uint8)
    labels = np.arange(10).reshape(-1, 1) % 2
    np.savez(
        tmp_path / "med.npz",
        train_images=images,
        train_labels=labels,
        test_images=images[:4],
        test_labels=labels[:4],
    )
    data = source("npz", path=tmp_path / "med.npz", class_names=["neg", "pos"]).load()
    assert data.arrays.shape == (14, 8, 8)
    assert data.splits.count("test") == 4 and data.labels[:2] == ["neg", "pos"]

    np.savez(
        tmp_path / "keras.npz",
        x_train=images / 255.0,
        y_train=labels.ravel(),
        x_test=images[:2] / 255.0,
        y_test=labels[:2].ravel(),
    )
    data = source("npz", path=tmp_path / "keras.npz").load()
    assert data.arrays.dtype == np.uint8
    np.testing.assert_array_equal(data.arrays[:10], images)

    np.savez(tmp_path / "odd.npz", pictures=images)
    with pytest.raises(UserError, match=r"no known keys .*pictures"):
        source("npz", path=tmp_path / "odd.npz").load()


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 0, 1, 2]))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images[:3])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2]))
    data = source("idx", path=tmp_path).load()
    assert data.arrays.shape == (9, 28, 28)
    assert data.splits.count("test") == 6 and data.splits.count("train") == 3
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)


def test_idx_truncated_is_an_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 5, 28, 28) + b"\0" * 100)
    with pytest.raises(UserError, match=r"truncated or corrupt"):
        read_idx(path)


def test_csv_manifest(tmp_path):
    root = make_class_folders(tmp_path / "imgs", {"a": 3, "b": 3})
    lines = ["path,label,split"] + [
        f"{c}/img {i}.png,{c},{'test' if i == 0 else 'train'}" for c in "ab" for i in range(3)
    ]
    (tmp_path / "manifest.csv").write_text("\n".join(lines))
    data = source("csv", path=tmp_path / "manifest.csv", root=root).load()
    assert data.splits.count("test") == 2 and len(data.ids) == 6

    (tmp_path / "bad.csv").write_text("path,label\nmissing.png,a\n")
    with pytest.raises(UserError, match=r"files not found: line 2: missing.png"):
        source("csv", path=tmp_path / "bad.csv").load()


def test_csv_paths_stay_under_the_root_unless_allowed(tmp_path):
    root = make_class_folders(tmp_path / "imgs", {"a": 2})
    outside = make_class_folders(tmp_path / "elsewhere", {"b": 2})
    manifest = tmp_path / "imgs" / "manifest.csv"
    manifest.write_text(f"path,label\na/img 0.png,a\n../elsewhere/b/img 0.png,b\n"
                        f"{outside / 'b' / 'img 1.png'},b\n")
    with pytest.raises(UserError, match=r"line 3: ../elsewhere/b/img 0.png is outside .*"
                       r"allow_outside_root: true"):
        source("csv", path=manifest).load()
    allowed = source("csv", path=manifest, allow_outside_root=True).load()
    assert len(allowed.ids) == 3 and allowed.paths[0].parent.parent == root


def test_csv_short_rows_and_latin1_are_one_line_errors(tmp_path):
    make_class_folders(tmp_path, {"a": 1})
    (tmp_path / "short.csv").write_text("path,label\na/img 0.png\n")
    with pytest.raises(UserError, match=r"short.csv line 2: a row needs path,label"):
        source("csv", path=tmp_path / "short.csv").load()
    (tmp_path / "latin.csv").write_bytes("path,label\na/img 0.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.csv is not UTF-8 text"):
        source("csv", path=tmp_path / "latin.csv").load()


def test_digits_is_offline_and_scaled():
    data = source("digits").load()
    assert data.arrays.shape == (1797, 8, 8) and data.arrays.max() == 255
    assert set(data.splits) == {None}


def test_torchvision_without_download_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"mnist not found .*download: true"):
        source("torchvision", name="mnist", root=tmp_path).load()


def test_pattern_images_differ():
    assert not np.array_equal(np.asarray(pattern(0, 0)), np.asarray(pattern(0, 1)))


def test_an_npz_that_is_not_a_zip_is_a_one_line_error(tmp_path):
    (tmp_path / "fake.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match=r"is not an \.npz archive"):
        source("npz", path=tmp_path / "fake.npz").load()


def test_file_names_that_are_not_utf8_are_listed_and_skipped(tmp_path):
    import os

    root = make_class_folders(tmp_path / "data", {"a": 2, "b": 2})
    odd = os.fsencode(str(root / "a")) + b"/caf\xe9.png"
    with open(odd, "wb") as handle:
        handle.write((root / "a" / "img 0.png").read_bytes())
    data = source("folder", path=root).load()
    assert len(data.ids) == 4
    assert data.ignored == ["a/caf\\xe9.png (file name is not valid UTF-8: rename it)"]


def test_links_that_loop_or_leave_the_root_are_listed_with_their_reason(tmp_path):
    root = make_class_folders(tmp_path / "data", {"a": 2, "b": 2})
    outside = make_class_folders(tmp_path / "outside", {"c": 1})
    (root / "a" / "loop").symlink_to(root / "a")
    (root / "a" / "away.png").symlink_to(outside / "c" / "img 0.png")
    (root / "b" / "gone.png").symlink_to(root / "b" / "missing.png")
    (root / "b" / "again.png").symlink_to(root / "b" / "img 0.png")
    data = source("folder", path=root).load()
    assert sorted(data.ids) == ["a/img 0.png", "a/img 1.png", "b/again.png", "b/img 0.png",
                                "b/img 1.png"]
    assert sorted(data.ignored) == ["a/away.png (a link out of the data root)",
                                    "a/loop (a linked folder, not followed)",
                                    "b/gone.png (a broken or looping link)"]
