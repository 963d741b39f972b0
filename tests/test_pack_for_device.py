"""benchmarks/pack_for_device.py: a data folder shrunk to travel to the GPU machine keeps
every name, and skips exactly the files the original run skips."""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _pack_module():
    spec = importlib.util.spec_from_file_location("pack", ROOT / "benchmarks" /
                                                  "pack_for_device.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packing_shrinks_large_images_and_keeps_the_rest_as_it_was(tmp_path):
    source = tmp_path / "data"
    (source / "train" / "a").mkdir(parents=True)
    grey = np.random.default_rng(0).integers(0, 255, (300, 400), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(source / "train" / "a" / "big.png")
    Image.fromarray(grey[:100, :120]).save(source / "train" / "a" / "small.jpg", quality=80)
    (source / "train" / "a" / "broken.jpg").write_bytes(b"not an image")
    (source / "SHA256SUMS").write_text("whatever\n")

    encoded, copied = _pack_module().pack_folder(source, tmp_path / "packed", 128, 92)

    packed = tmp_path / "packed" / "train" / "a"
    assert (encoded, copied) == (1, 2)
    with Image.open(packed / "big.png") as big:
        # The name is kept (a run's ids are file names); the content is a grey JPEG.
        assert (big.format, big.mode, big.size) == ("JPEG", "L", (171, 128))
    for name in ("small.jpg", "broken.jpg"):
        assert (packed / name).read_bytes() == (source / "train" / "a" / name).read_bytes()
    assert not (tmp_path / "packed" / "SHA256SUMS").exists()
