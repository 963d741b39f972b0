"""`visionbench export`: a run's model as an ONNX graph with its card, checked against
PyTorch on the run's test images.

The graph takes what decoding gives — uint8 images (N, H, W, C) at the run's data size, as
the card's `decode` settings produce them — and returns class probabilities: the input
pipeline (channels, resize to the model's size, normalisation), the network and its output
kind are all inside, so a deployment needs only Pillow, NumPy and onnxruntime. An ensemble
is exported as one graph averaging its members, as the run scored it.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visionbench.config import load_config
from visionbench.data.dataset import load_images
from visionbench.errors import UserError
from visionbench.evaluate.tta import view_transform
from visionbench.evaluate.unfamiliar import Scorer
from visionbench.models.outputs import OUTPUTS
from visionbench.predict.model import Predictor, load
from visionbench.provenance import package_versions
from visionbench.rundir.documents import (
    DataRecord,
    EvaluationDocument,
    ExportCard,
    ExportData,
    ExportMember,
    ExportTrainingHashes,
    ExportUnfamiliar,
    GraphTensor,
    Parity,
    TrainingHashes,
    Unfamiliar,
)
from visionbench.rundir.layout import ExportFolder, RunFolder, file_checksum
from visionbench.runtime import embedding
from visionbench.runtime.features import features_and_logits
from visionbench.runtime.progress import ignore
from visionbench.runtime.trained import LoadedModel
from visionbench.schemas.data import PreprocessConfig
from visionbench.schemas.inputs import InputSpec
from visionbench.version import __version__

# What the export must reproduce of PyTorch on the test images, or it fails.
MAX_DIFFERENCE = 1e-4
MIN_AGREEMENT = 0.999
OPSET = 18  # Resize with antialias, for the pipeline's bilinear resize
# Parity is checked on at most this many test images: half those nearest the decision
# boundary (where a small difference could change the class), half a random sample.
# Checking all 3,000 images of a held-out set took 2 min 50 s with nothing printed.
PARITY_IMAGES = 256


class _Graph(nn.Module):
    """uint8 (N, H, W, C) -> (N, classes) probabilities, averaged over the members and the
    test-time augmentation views, then scaled by the run's temperature (if fitted); with
    a detector, also the (N,) unfamiliarity scores, from the first member's first view
    (as `Predictor.read` scores)."""

    def __init__(self, members: list[tuple[LoadedModel, str]], views: list[str],
                 temperature: float | None, scorer: Scorer | None = None) -> None:
        super().__init__()
        self.views = [view_transform(name) for name in views]
        self.temperature = temperature
        self.networks = nn.ModuleList(model.module.cpu().eval() for model, _ in members)
        self.pipelines = [model.pipeline for model, _ in members]
        for pipeline in self.pipelines:
            pipeline.mean, pipeline.std = pipeline.mean.cpu(), pipeline.std.cpu()
        self.outputs = [OUTPUTS.get(output) for _, output in members]
        self.scorer = scorer.cpu().eval() if scorer is not None else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        images = pixels.permute(0, 3, 1, 2)
        found, features = [], None
        for index, (network, pipeline, output) in enumerate(
                zip(self.networks, self.pipelines, self.outputs, strict=True)):
            views = []
            for number, view in enumerate(self.views):
                inputs = pipeline(images, None, train=False, transform=view)
                if self.scorer is not None and index == number == 0:
                    features, logits = features_and_logits(network, inputs)
                else:
                    logits = network(inputs)
                views.append(output.probabilities(logits))
            found.append(torch.stack(views).mean(dim=0))
        mean = torch.stack(found).mean(dim=0)
        if self.temperature is not None:
            # As `evaluate.calibration.scaled`: log-probabilities over the temperature.
            mean = (mean.clamp_min(1e-12).log() / self.temperature).softmax(dim=1)
        if self.scorer is None or features is None:
            return mean
        return mean, self.scorer(features, images)


def export_model(run_dir: Path, model: str | None = None, out: Path | None = None,
                 report: Callable[[str], None] = ignore) -> Path:
    """Export `model` of the run (default the recommended one) into `out` (default
    `<run>/export/<model>`); returns the export folder. Fails, writing nothing, when the
    graph does not reproduce PyTorch on the test images."""
    for needed in ("onnxscript", "onnxruntime"):
        if importlib.util.find_spec(needed) is None:
            raise UserError(f"export needs {needed}: pip install 'visionbench[onnx]'")
    run = RunFolder(run_dir).check()
    predictor = load(run_dir, model)
    for member, _ in predictor.members:
        member.device = torch.device("cpu")
    target = out or run.export_folder(predictor.name).path
    if ExportFolder(target).is_export():
        raise UserError(f"{target} already holds an export: choose another --out or delete it")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} exists and is not an empty folder: give --out a new or "
                        "empty folder (nothing there is replaced)")
    pictures, tested = _test_images(run, predictor)
    check = predictor.unfamiliar
    graph = _Graph(predictor.members, predictor.views, predictor.temperature,
                   check.scorer if check is not None else None).eval()
    report(f"export: writing the ONNX graph of {predictor.name}, then checking it against "
           f"PyTorch on {len(pictures):,} of the {tested:,} test images")
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None
                                     ) as scratch:
        staged = ExportFolder(Path(scratch) / "export")
        staged.path.mkdir()
        _write_onnx(graph, pictures, staged.onnx)
        parity = _parity(graph, staged.onnx, pictures,
                         check.threshold if check is not None else None)
        flags = 1.0 if parity.unfamiliar_agreement is None else parity.unfamiliar_agreement
        if parity.max_abs_difference > MAX_DIFFERENCE or min(parity.top1_agreement,
                                                               flags) < MIN_AGREEMENT:
            raise UserError(
                f"the ONNX graph of {predictor.name} differs from PyTorch on the test images "
                f"(largest probability difference {parity.max_abs_difference:.2e}, top-1 "
                f"agreement {parity.top1_agreement:.4f}, unfamiliar flags' agreement "
                f"{flags:.4f}; limits "
                f"{MAX_DIFFERENCE:g} and {MIN_AGREEMENT}): nothing was exported")
        staged.write(_card(run, predictor, parity))
        hashes = run.read(TrainingHashes)
        if hashes is not None:
            staged.write(ExportTrainingHashes.model_validate(
                hashes.model_dump(exclude={"schema_version", "checksum"})))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()  # empty, checked above
        shutil.move(str(staged.path), str(target))
    return target


def parity_sample(prob: np.ndarray, limit: int = PARITY_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted positions of the images the parity check runs on: every one up to `limit`;
    beyond, the `limit // 2` with the smallest margin between their two most probable
    classes and a random sample of the rest.

    Example:
        >>> prob = np.array([[0.9, 0.1], [0.51, 0.49], [0.7, 0.3], [0.2, 0.8]])
        >>> 1 in parity_sample(prob, limit=2)
        True
    """
    if len(prob) <= limit:
        return np.arange(len(prob))
    top = np.sort(prob, axis=1)
    nearest = np.argsort(top[:, -1] - top[:, -2], kind="stable")[: limit // 2]
    others = np.setdiff1d(np.arange(len(prob)), nearest)
    drawn = np.random.default_rng(seed).choice(others, size=limit - len(nearest), replace=False)
    return np.sort(np.concatenate([nearest, drawn]))


def _test_images(run: RunFolder, predictor: Predictor) -> tuple[np.ndarray, int]:
    """The test images the parity check runs on (`parity_sample` of the run's saved test
    predictions), decoded as the run decoded them, and how many test images there are."""
    saved = run.model(predictor.name).read_predictions("test", predictor.classes)
    ids = [saved.ids[k] for k in parity_sample(saved.prob).tolist()]
    config = load_config(run.config_file)
    size = tuple(run.require(DataRecord).image_shape)
    try:
        return load_images(config.data, ids, size), len(saved.ids)
    except UserError as exc:
        raise UserError(f"the parity check needs the run's test images, which cannot be read "
                        f"({exc}): export where the run's data is") from None


def _write_onnx(graph: _Graph, pictures: np.ndarray, path: Path) -> None:
    example = torch.from_numpy(np.ascontiguousarray(pictures[:2]))
    outputs = ["probabilities"] + (["unfamiliar"] if graph.scorer is not None else [])
    try:
        program = torch.onnx.export(
            graph, (example,), dynamo=True, opset_version=OPSET, input_names=["images"],
            output_names=outputs, dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            verbose=False)
        program.save(str(path))
    except OSError:
        raise  # the machine refused (a full disk): said as such, not as the model's fault
    except Exception as exc:  # the exporter raises many kinds for unsupported operators
        raise UserError(f"this model cannot be exported to ONNX: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:300]}") from None


def _parity(graph: _Graph, path: Path, pictures: np.ndarray, threshold: float | None
            ) -> Parity:
    """Largest probability difference and top-1 agreement, onnxruntime against PyTorch;
    with a detector, the largest unfamiliarity difference and the flags' agreement at
    `threshold`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours: list[list[np.ndarray]] = []
    theirs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for first in range(0, len(pictures), 64):
            batch = np.ascontiguousarray(pictures[first:first + 64])
            found = graph(torch.from_numpy(batch))
            ours.append([t.numpy() for t in (found if isinstance(found, tuple) else (found,))])
            theirs.append(session.run(None, {"images": batch}))
    a, b = (np.concatenate([batch[0] for batch in side]) for side in (ours, theirs))
    limits = {"max_abs_difference": MAX_DIFFERENCE, "top1_agreement": MIN_AGREEMENT}
    checked = {"images": len(a), "chosen": f"up to {PARITY_IMAGES} test images: half "
               "nearest the decision boundary, half at random",
               "max_abs_difference": float(np.abs(a - b).max()),
               "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean())}
    if threshold is None:
        return Parity(**checked, limits=limits)
    x, y = (np.concatenate([batch[1] for batch in side]) for side in (ours, theirs))
    return Parity(**checked, limits={**limits, "unfamiliar_agreement": MIN_AGREEMENT},
                  unfamiliar_max_abs_difference=float(np.abs(x - y).max()),
                  unfamiliar_agreement=float(((x > threshold) == (y > threshold)).mean()))


def _card(run: RunFolder, predictor: Predictor, parity: Parity) -> ExportCard:
    data = run.require(DataRecord)
    evaluation = run.model(predictor.name).read(EvaluationDocument)
    height, width = data.image_shape
    channels = predictor.decode_settings.channels
    # The card is read without visionbench: every setting is written, defaults included
    # (a part writes only the fields set on it).
    members = [ExportMember(model=name, family=card.family, output=card.output,
                            input=InputSpec(**card.input.model_dump()))
               for name, card in zip(predictor.members_names, predictor.member_cards,
                                     strict=True)]
    versions = package_versions(("torch", "onnx", "onnxruntime", "onnxscript", "timm"))
    return ExportCard(
        model=predictor.name, classes=predictor.classes,
        decode=PreprocessConfig(**predictor.decode_settings.model_dump()),
        input=GraphTensor(name="images", dtype="uint8",
                          shape=["batch", height, width, channels],
                          layout="NHWC, the decoded image as it is (0-255)"),
        output=GraphTensor(name="probabilities", dtype="float32",
                           shape=["batch", len(predictor.classes)],
                           holds="class probabilities in the order of `classes`"),
        members=members, positive_classes=predictor.positive, threshold=predictor.threshold,
        margin=predictor.margin, margin_note=predictor.margin_note,
        temperature=predictor.temperature, conformal=predictor.conformal,
        unfamiliar=_unfamiliar_card(run, predictor),
        test_metrics=dict(evaluation.metrics) if evaluation else {},
        # The SHA-256 of the run's data record: its classes, splits, counts and duplicates.
        data=ExportData(source=data.source, fingerprint=file_checksum(run.file(DataRecord)),
                        test_images=parity.images),
        software={"visionbench": __version__, "python": platform.python_version(),
                  **versions},
        parity=parity, source_run=str(run.path))


def _unfamiliar_card(run: RunFolder, predictor: Predictor) -> ExportUnfamiliar | None:
    """What the card says of the detector inside the graph (None: the model has none)."""
    check = predictor.unfamiliar
    if check is None:
        return None
    fitted = run.model(predictor.name).read(Unfamiliar)
    if fitted is None:  # a test-time augmentation row scores with its model's detector
        fitted = run.model(predictor.members_names[0]).require(Unfamiliar)
    return ExportUnfamiliar(
        method=check.method, keep=check.keep, threshold=check.threshold,
        generic=embedding.describe() if fitted.generic else None,
        flagged={split: counts.share for split, counts in fitted.flagged.items()})


def evaluation_overrides(model_file: Path, name: str) -> list[str]:
    """`--set` arguments that feed an export's graph what it takes (the decoded image as it
    is: NHWC, 0-255, at the data size), when `model_file` is an export's `model.onnx`; none
    for any other file."""
    folder = ExportFolder(Path(model_file).parent)
    if not folder.is_export() or Path(model_file).name != folder.onnx.name:
        return []
    card = folder.require(ExportCard)
    channels = int(card.input.shape[3])
    zeros, ones = ",".join(["0"] * channels), ",".join(["1"] * channels)
    entry = f"models.{name}"
    # No size: the data config decodes at the data size, which is the graph's input size.
    return [f"{entry}.input.channels={channels}",
            f"{entry}.input.layout=nhwc", f"{entry}.input.scale=255",
            f"{entry}.input.mean=[{zeros}]", f"{entry}.input.std=[{ones}]",
            f"{entry}.external_outputs=probabilities"]
