import io

import numpy as np
import pytest
from PIL import Image

from conftest import pattern
from visionbench.data.decode import (
    crop_dark_margins,
    exact_hash,
    grey32,
    phash_from_grey32,
    preprocess,
    to_mode,
)
from visionbench.data.hamming import popcount64
from visionbench.readers import Raster
from visionbench.schemas.data import PreprocessConfig


def test_resize_modes_give_requested_shape():
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    for how in ("stretch", "letterbox", "center_crop"):
        pixels, facts = preprocess(Raster.of(image), PreprocessConfig(size=(16, 12), resize=how))
        assert pixels.shape == (16, 12, 3)
        assert (facts.width, facts.height) == (40, 20)


def test_letterbox_pads_with_black_and_keeps_content():
    image = Image.new("L", (40, 20), 255)
    settings = PreprocessConfig(size=16, resize="letterbox", color="grayscale")
    pixels, _ = preprocess(Raster.of(image), settings)
    assert pixels[0, :, 0].max() == 0 and pixels[-1, :, 0].max() == 0
    assert pixels[8, :, 0].min() == 255


def test_grayscale_and_gray3_store_one_channel():
    image = pattern(1, 0)
    assert preprocess(Raster.of(image), PreprocessConfig(color="grayscale"))[0].shape[-1] == 1
    assert preprocess(Raster.of(image), PreprocessConfig(color="gray3"))[0].shape[-1] == 1
    assert PreprocessConfig(color="gray3").channels == 3


def test_crop_dark_margins_finds_the_bright_region():
    canvas = np.zeros((50, 60), np.uint8)
    canvas[10:30, 20:45] = 200
    cropped = crop_dark_margins(Image.fromarray(canvas), threshold=10)
    assert cropped.size == (25, 20)
    assert crop_dark_margins(Image.new("L", (5, 5)), 10).size == (5, 5)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 10), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    buffer.seek(0)
    _, facts = preprocess(Raster.of(Image.open(buffer)), PreprocessConfig())
    assert (facts.width, facts.height) == (10, 30)
    buffer.seek(0)
    _, raw = preprocess(Raster.of(Image.open(buffer)), PreprocessConfig(exif=False))
    assert (raw.width, raw.height) == (30, 10)


def test_sixteen_bit_images_are_rescaled_not_clipped():
    values = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    image = Image.fromarray(values)
    assert image.mode.startswith("I")
    grey = np.asarray(to_mode(image, "L"))
    assert grey.min() == 0 and grey.max() == 255
    assert len(np.unique(grey)) > 32


def test_transparent_pixels_become_black():
    image = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert np.asarray(to_mode(image, "RGB")).max() == 0


def test_phash_is_stable_under_reencoding_and_distinct_between_images():
    image = pattern(2, 3, size=64)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    reencoded = Image.open(io.BytesIO(buffer.getvalue())).resize((50, 50))
    hashes = phash_from_grey32(
        np.stack([grey32(image), grey32(reencoded), grey32(pattern(4, 9, size=64))])
    )
    assert int(popcount64(hashes[0] ^ hashes[1])) <= 4
    assert int(popcount64(hashes[0] ^ hashes[2])) > 10


def test_exact_hash_depends_on_pixels_and_shape():
    a = np.zeros((4, 4), np.uint8)
    assert exact_hash(a) == exact_hash(a.copy())
    assert exact_hash(a) != exact_hash(np.zeros((2, 8), np.uint8))
    b = a.copy()
    b[0, 0] = 1
    assert exact_hash(a) != exact_hash(b)


def test_equalize_spreads_a_dim_image_over_the_full_range():
    rng = np.random.default_rng(0)
    dim = Image.fromarray(rng.integers(40, 90, (32, 32), dtype=np.uint8), "L")
    plain, _ = preprocess(Raster.of(dim), PreprocessConfig(color="grayscale"))
    spread, _ = preprocess(Raster.of(dim), PreprocessConfig(color="grayscale", equalize=True))
    assert plain.max() < 90 and spread.max() == 255 and spread.min() < 10
    # Equalisation keeps the order of grey levels: brighter stays brighter.
    flat_plain, flat_spread = plain.ravel(), spread.ravel()
    order = np.argsort(flat_plain, kind="stable")
    assert np.all(np.diff(flat_spread[order].astype(int)) >= 0)


def test_a_16_bit_png_keeps_its_depth_until_the_configured_window(tmp_path):
    from visionbench.data.decode import window_levels
    from visionbench.readers import read_raster
    from visionbench.schemas.data import FixedWindow, PercentileWindow

    values = np.tile(np.arange(0, 64000, 1000, dtype=np.uint16), (8, 1))
    Image.fromarray(values).save(tmp_path / "scan.png")
    with read_raster(tmp_path / "scan.png") as raster:
        assert raster.image.mode.startswith("I")  # 16 bits, not clipped to 8
        grey = PreprocessConfig(color="grayscale")
        ranged = preprocess(raster, grey)[0][..., 0]
        fixed = preprocess(raster, grey.model_copy(
            update={"window": FixedWindow(center=20000, width=10000)}))[0][..., 0]
        cut = preprocess(raster, grey.model_copy(
            update={"window": PercentileWindow(percentiles=(25, 75))}))[0][..., 0]
    np.testing.assert_array_equal(ranged, np.rint(values * (255 / 63000)).astype(np.uint8))
    np.testing.assert_array_equal(fixed, np.rint(window_levels(values.astype(float), 20000,
                                                               10000)).astype(np.uint8))
    assert (cut == 0).mean() == pytest.approx(0.25, abs=0.02)
    assert (cut == 255).mean() == pytest.approx(0.25, abs=0.02)
