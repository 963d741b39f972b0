"""The 60-image check of issue 27: images that are not digits at all (20 photos scikit-image
ships, 20 chest X-rays, 20 brain MRIs from `../shared/data`) given to the quickstart's
models; how many each unfamiliar-image detector flags, against the share of the model's
own test images it flags.

Run from the repository root:
    python benchmarks/unfamiliar_check.py OUT [--methods knn,mahalanobis,energy,vim]
It runs the quickstart once per method into OUT (about 15 s each on two cores) and prints
one row per model and method. Needs scikit-image (a dev dependency) and `../shared/data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from visionbench import load
from visionbench.config import load_config
from visionbench.orchestrate import run_config
from visionbench.rundir.documents import Unfamiliar
from visionbench.rundir.layout import RunFolder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = ["astronaut", "brick", "camera", "cat", "cell", "checkerboard", "clock", "coffee",
          "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
          "immunohistochemistry", "microaneurysms", "moon", "page", "rocket", "text"]


def foreign_images() -> dict[str, list[np.ndarray | Path]]:
    """Twenty images of each foreign kind: photos as arrays, X-rays and MRIs as files."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()
        photos.append(np.ascontiguousarray(pixels[..., :3] if pixels.ndim == 3 else pixels)
                      .astype(np.uint8))
    xrays = sorted((SHARED / "chest_xray_224" / "test").rglob("*.jpeg"))[::30][:20]
    mris = sorted((SHARED / "brain_tumor_mri" / "Testing").rglob("*.jpg"))[::19][:20]
    return {"photos": photos, "chest X-rays": xrays, "brain MRIs": mris}


def main() -> None:
    """Run the quickstart per method and count what each model flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--methods", default="knn,mahalanobis,energy,vim")
    args = parser.parse_args()
    foreign = foreign_images()
    print(f"{'method':12} {'model':10} {'own test flagged':>17} "
          + " ".join(f"{kind:>13}" for kind in foreign) + "   total")
    for method in args.methods.split(","):
        config = load_config("quickstart", [f"output.dir={args.out}", "train.progress=quiet",
                                             f"evaluate.unfamiliar.method={method}",
                                             f"output.name=unfamiliar-{method}"])
        result = run_config(config, report=lambda _: None)
        for name in config.models:
            predictor = load(result.folder, name)
            own = RunFolder(result.folder).model(name).require(Unfamiliar).flagged["test"].share
            counts = [sum(bool(p.unfamiliar) for p in predictor.predict(images))
                      for images in foreign.values()]
            print(f"{method:12} {name:10} {own:17.3f} "
                  + " ".join(f"{count:>10d}/20" for count in counts)
                  + f"   {sum(counts)}/60")


if __name__ == "__main__":
    main()
