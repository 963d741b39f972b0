"""Contact sheets drawn with Pillow (visionbench.pictures)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from visionbench.pictures import (
    GAP,
    MARGIN,
    contact_sheet,
    font,
    heat_overlay,
    jet,
    save_png,
    tile,
)


def test_small_images_are_enlarged_by_whole_pixels_and_large_ones_reduced():
    digit = np.zeros((8, 4, 1), np.uint8)
    digit[0, 0, 0] = 255
    enlarged = np.asarray(tile(digit, 32))
    assert enlarged.shape == (32, 16, 3)
    # Nearest neighbour: the one white pixel becomes a crisp 4 x 4 block, nothing blurred.
    assert (enlarged[:4, :4] == 255).all() and (enlarged[4:, :] == 0).all()
    assert tile(np.zeros((300, 600, 3), np.uint8), 150).size == (150, 75)


def test_a_sheet_places_every_picture_in_its_cell_under_its_caption(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    pictures = [Image.new("RGB", (20, 10), colour) for colour in colours]
    sheet = contact_sheet(pictures, ["one\ntwo lines", "b", ""], columns=2)
    caption_height = 2 * (10 + 3)
    assert sheet.size == (2 * MARGIN + 2 * 20 + GAP,
                          2 * MARGIN + 2 * (caption_height + 10) + GAP)
    pixels = np.asarray(sheet)
    for index, colour in enumerate(colours):
        row, column = divmod(index, 2)
        left = MARGIN + column * (20 + GAP)
        top = MARGIN + row * (caption_height + 10 + GAP) + caption_height
        assert (pixels[top:top + 10, left:left + 20] == colour).all()
    # The caption is drawn above the picture: dark ink where the first caption stands.
    assert pixels[MARGIN:MARGIN + caption_height, MARGIN:MARGIN + 20].min() < 128


def test_a_caption_wider_than_its_cell_is_cut_and_a_heading_takes_its_own_line():
    pictures = [Image.new("RGB", (40, 40), "white")]
    bare = contact_sheet(pictures, ["x" * 200], columns=1)
    headed = contact_sheet(pictures, ["x" * 200], columns=1, heading="a heading")
    # The long caption does not widen the sheet; the heading adds height, not width.
    assert bare.width == 2 * MARGIN + 40 and headed.width == bare.width
    assert headed.height > bare.height
    assert font(10).getlength("x" * 200) > 40


def test_jet_runs_from_blue_through_green_to_red_and_an_overlay_blends_by_alpha(tmp_path):
    assert np.allclose(jet(np.array([0.0, 0.5, 1.0])),
                       [[0, 0, 0.5], [0.5, 1, 0.5], [0.5, 0, 0]])
    image = np.full((4, 4, 1), 100, np.uint8)
    heat = np.ones((4, 4))
    assert (heat_overlay(image, heat, alpha=0.0) == 100).all()
    assert (heat_overlay(image, heat, alpha=1.0) == [128, 0, 0]).all()
    path = save_png(Image.fromarray(heat_overlay(image, heat)), tmp_path / "overlay.png")
    assert Image.open(path).size == (4, 4)
    assert [found.name for found in tmp_path.iterdir()] == ["overlay.png"]
