import os
import time

import numpy as np
import pytest

from conftest import pattern
from visionbench.data import cache as cache_module
from visionbench.data.cache import decode
from visionbench.data.sources import SOURCES
from visionbench.schemas.data import PreprocessConfig


def folder_source(path):
    return SOURCES.get("folder")(source="folder", path=path).load()


def test_second_decode_comes_from_cache_with_same_pixels(class_folder, tmp_path):
    config = PreprocessConfig(size=16)
    first = decode(folder_source(class_folder), config, tmp_path / "c")
    second = decode(folder_source(class_folder), config, tmp_path / "c")
    assert not first.from_cache and second.from_cache
    assert first.key == second.key
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    assert first.images.shape == (36, 16, 16, 3) and first.ok.all()


def test_changing_a_file_or_a_setting_invalidates(class_folder, tmp_path):
    config = PreprocessConfig(size=16)
    base = decode(folder_source(class_folder), config, tmp_path / "c")
    assert (
        decode(folder_source(class_folder), PreprocessConfig(size=12), tmp_path / "c").key
        != base.key
    )
    assert (
        decode(
            folder_source(class_folder),
            PreprocessConfig(size=16, color="grayscale"),
            tmp_path / "c",
        ).key
        != base.key
    )
    equalized = PreprocessConfig(size=16, equalize=True)
    assert decode(folder_source(class_folder), equalized, tmp_path / "c").key != base.key
    # Normalisation is applied later, so it shares the decoded entry.
    assert (
        decode(
            folder_source(class_folder),
            PreprocessConfig(size=16, normalize="imagenet"),
            tmp_path / "c",
        ).key
        == base.key
    )
    target = class_folder / "cat" / "img 0.png"
    pattern(2, 77).save(target)
    os.utime(target, (time.time() + 5, time.time() + 5))
    changed = decode(folder_source(class_folder), config, tmp_path / "c")
    assert changed.key != base.key and not changed.from_cache


def test_corrupt_and_truncated_images_are_skipped_and_listed(class_folder, tmp_path):
    (class_folder / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    good = (class_folder / "dog" / "img 0.png").read_bytes()
    (class_folder / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    decoded = decode(folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c")
    assert set(decoded.failures) == {"cat/broken.jpg", "dog/cut.png"}
    assert decoded.ok.sum() == 36
    again = decode(folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c")
    assert again.from_cache and set(again.failures) == set(decoded.failures)


def test_interrupted_decode_leaves_no_trusted_entry(class_folder, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "_write_facts", explode)
    with pytest.raises(KeyboardInterrupt):
        decode(folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c")
    assert list((tmp_path / "c" / "decoded").iterdir()) == []
    monkeypatch.undo()
    assert not decode(
        folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c"
    ).from_cache


@pytest.mark.slow
def test_process_pool_gives_the_same_result_as_one_process(class_folder, tmp_path, monkeypatch):
    serial = decode(
        folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "a", workers=1
    )
    monkeypatch.setattr(cache_module, "POOL_THRESHOLD", 4)
    pooled = decode(
        folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "b", workers=2
    )
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(pooled.images))
    assert serial.exact == pooled.exact


def test_mixed_sizes_without_size_is_an_error(class_folder, tmp_path):
    from visionbench.errors import UserError

    pattern(0, 50, size=30).save(class_folder / "cat" / "big.png")
    with pytest.raises(UserError, match=r"different sizes.*data.preprocess.size"):
        decode(folder_source(class_folder), PreprocessConfig(), tmp_path / "c")


@pytest.mark.slow
def test_arrays_keep_native_size(tmp_path):
    source = SOURCES.get("digits")(source="digits").load()
    decoded = decode(source, PreprocessConfig(color="grayscale"), tmp_path / "c")
    assert decoded.images.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(decoded.images)[..., 0], source.arrays)


def test_a_damaged_cache_entry_is_decoded_again(class_folder, tmp_path):
    from visionbench.data.cache import decode
    from visionbench.data.sources import FolderSource
    from visionbench.schemas.data import PreprocessConfig

    source = FolderSource(source="folder", path=class_folder).load()
    config = PreprocessConfig(size=(8, 8))
    first = decode(source, config, tmp_path)
    before, images = np.array(first.images), first.path / "images.npy"
    del first  # its memory map must go before the file is cut
    images.write_bytes(images.read_bytes()[:200])  # cut short
    again = decode(source, config, tmp_path)
    assert not again.from_cache and (np.asarray(again.images) == before).all()


def test_over_the_disk_budget_images_are_streamed_with_the_same_pixels(class_folder, tmp_path):
    from visionbench.data.streamed import StreamedImages

    config = PreprocessConfig(size=16, crop_margins=True, margin_threshold=5)
    stored = decode(folder_source(class_folder), config, tmp_path / "c")
    streamed = decode(folder_source(class_folder), config, tmp_path / "c", max_gb=0)
    assert isinstance(streamed.images, StreamedImages) and not streamed.from_cache
    assert streamed.key == stored.key + cache_module.STREAMED
    assert not (streamed.path / "images.npy").exists()
    assert streamed.images.shape == stored.images.shape
    np.testing.assert_array_equal(streamed.images[np.arange(36)], np.asarray(stored.images))
    np.testing.assert_array_equal(streamed.images[7], stored.images[7])
    np.testing.assert_array_equal(streamed.images[3:9:2], stored.images[3:9:2])
    assert streamed.exact == stored.exact and (streamed.phash == stored.phash).all()
    again = decode(folder_source(class_folder), config, tmp_path / "c", max_gb=0)
    assert again.from_cache and isinstance(again.images, StreamedImages)


def test_the_default_budget_is_a_share_of_the_free_disk(class_folder, tmp_path, monkeypatch):
    from collections import namedtuple

    from visionbench.data.streamed import StreamedImages

    usage = namedtuple("usage", "total used free")
    # 36 images of 16x16x3 = 27,648 bytes: half of 40,000 free bytes is too little.
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage(1, 1, 40_000))
    tight = decode(folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c")
    assert isinstance(tight.images, StreamedImages)
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage(1, 1, 10**9))
    roomy = decode(folder_source(class_folder), PreprocessConfig(size=16), tmp_path / "c")
    assert isinstance(roomy.images, np.memmap)
    # Once decoded, the entry is used even when it leaves less free space than it takes.
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage(1, 1, 40_000))
    assert isinstance(decode(folder_source(class_folder), PreprocessConfig(size=16),
                             tmp_path / "c").images, np.memmap)


def test_a_streamed_split_is_read_a_batch_at_a_time_as_stored(class_folder, tmp_path):
    import torch

    from visionbench.config import load_config
    from visionbench.data.dataset import prepare_data
    from visionbench.runtime.batches import SplitImages

    settings = ["data.source=folder", f"data.path={class_folder}", "data.preprocess.size=16",
                f"data.cache_dir={tmp_path / 'c'}"]
    stored = prepare_data(load_config("quickstart", settings).data)
    streamed = prepare_data(load_config("quickstart", [*settings, "data.cache.max_gb=0"]).data)
    order = torch.randperm(int((stored.split == "train").sum()), generator=torch.Generator()
                           .manual_seed(0))
    batches = [SplitImages(data, "train", torch.device("cpu"), memory_budget_mb=0)
               .batches(order, 5) for data in (stored, streamed)]
    for (mine, my_targets), (theirs, their_targets) in zip(*batches, strict=True):
        assert torch.equal(mine, theirs) and torch.equal(my_targets, their_targets)


def test_reading_ahead_keeps_the_order_reads_the_next_batch_early_and_passes_errors_on():
    import threading

    from visionbench.runtime.batches import read_ahead

    second_read = threading.Event()

    def batches():
        yield "first"
        second_read.set()
        yield "second"
        raise ValueError("cannot read image 3")

    reading = read_ahead(batches())
    assert next(reading) == "first"
    # The second batch is read while the caller still works on the first.
    assert second_read.wait(5)
    assert next(reading) == "second"
    with pytest.raises(ValueError, match="cannot read image 3"):
        next(reading)
