"""A trained model of a run, ready to predict: loaded from its run folder alone.

Everything that shapes a prediction comes from the run folder, never from the current
config or data: the decode settings the run used (its saved config and data record), the
model's card (input size, channels, normalisation, output kind) and weights, the positive
reading's threshold chosen on validation, and an uncertainty margin chosen on validation.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from io import IOBase
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import yaml
from PIL import Image

from visionbench import registries  # noqa: F401 - a card's config names registered parts
from visionbench.data.decode import ImageFacts, preprocess, with_channels
from visionbench.errors import UserError
from visionbench.evaluate.calibration import scaled
from visionbench.evaluate.conformal import prediction_sets
from visionbench.evaluate.evaluation import with_temperature
from visionbench.evaluate.explain import (
    ExplainSettings,
    explain,
    find_layer,
    unfaithful_methods,
)
from visionbench.evaluate.tta import Transform, averaged
from visionbench.evaluate.unfamiliar import Scorer
from visionbench.models.outputs import OUTPUTS
from visionbench.pictures import heat_overlay
from visionbench.predict.training import TrainingIndex, training_file
from visionbench.readers import Raster, read_raster
from visionbench.rundir.documents import (
    Comparison,
    ConformalSets,
    DataRecord,
    EvaluationDocument,
    Explanations,
    ExportCard,
    ExportTrainingHashes,
    GenericUnfamiliar,
    ModelCard,
    ModelMetrics,
    SplitShift,
    TrainingHashes,
    Unfamiliar,
)
from visionbench.rundir.layout import ExportFolder, ModelFolder, RunFolder
from visionbench.rundir.predictions import Predictions
from visionbench.runtime import embedding
from visionbench.runtime.features import reading_features
from visionbench.runtime.trained import LoadedModel, load_trained
from visionbench.schemas.data import PreprocessConfig

# What a prediction can be asked of: a path, an open binary file (an upload), a PIL image
# or a uint8 array.
ImageInput = Path | str | BinaryIO | Image.Image | np.ndarray

# Validation accuracy the images above the uncertainty margin must reach.
TARGET_ACCURACY = 0.99


def choose_margin(val: Predictions, target: float = TARGET_ACCURACY) -> float | None:
    """The lowest top-class probability above which the validation images are right at
    least `target` of the time; None when no such probability exists (even the most
    confident validation images miss the target, so no margin can promise it).

    Example:
        >>> y = np.array([0, 0, 1, 1])
        >>> prob = np.array([[0.95, 0.05], [0.6, 0.4], [0.55, 0.45], [0.1, 0.9]])
        >>> choose_margin(Predictions(list("abcd"), y, prob), 0.99)
        0.6
    """
    confidence = val.prob.max(axis=1)
    correct = val.y_pred == val.y_true
    order = np.argsort(-confidence, kind="stable")
    # Accuracy of the k most confident images, for every k.
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    reaching = np.flatnonzero(running >= target)
    if not len(reaching):
        return None
    return float(confidence[order][reaching[-1]])


@dataclass
class Explanation:
    """A heat map in [0, 1] over the image as the model sees it (uint8, its size and
    channels), the method and class it explains, and whether that method beat a random
    map's deletion score on the run's test images (None when unknown)."""

    method: str
    target: str
    map: np.ndarray
    image: np.ndarray
    faithful: bool | None

    def overlay(self, opacity: float = 0.45) -> np.ndarray:
        """The map drawn over the image (uint8 RGB, the image's size), in the report's
        colours: blue where the map is 0, red where it is 1."""
        return heat_overlay(self.image, self.map, opacity)


@dataclass
class UnfamiliarCheck:
    """A model's unfamiliar-image detector as the run fitted it: its method, the threshold
    chosen on validation, the share of validation images under it, and its `Scorer`
    (None over an export, whose graph scores)."""

    method: str
    threshold: float
    keep: float
    scorer: Scorer | None = None

    @torch.no_grad()
    def scores(self, features: np.ndarray, pictures: np.ndarray) -> np.ndarray:
        """Unfamiliarity of images from their (N, D) penultimate `features` and their uint8
        (N, H, W, C) `pictures` (above `threshold`: unfamiliar)."""
        if self.scorer is None:
            raise UserError("this detector is scored inside its export's graph")
        device = next(iter(self.scorer.buffers())).device
        images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2)
        return self.scorer(torch.from_numpy(features).to(device),
                           images.to(device)).cpu().numpy()


@dataclass
class Predictor:
    """One model of a run (or an ensemble of its models), with its decode settings and the
    readings chosen on validation."""

    name: str
    classes: list[str]
    card: ModelCard | ExportCard
    members: list[tuple[LoadedModel, str]]
    members_names: list[str]
    decode_settings: PreprocessConfig
    member_cards: list[ModelCard] = field(default_factory=list)
    positive: list[str] | None = None
    threshold: float | None = None
    margin: float | None = None
    margin_note: str = ""
    training: TrainingIndex | None = None
    faithful_method: str | None = None
    faithful: bool | None = None
    gradcam_layer: str | None = None
    notes: list[str] = field(default_factory=list)
    # Test-time augmentation: the views each member's probabilities are averaged over.
    views: list[str] = field(default_factory=lambda: ["identity"])
    # Temperature scaling fitted on validation (None: the probabilities as trained).
    temperature: float | None = None
    # Conformal sets: the score, its validation threshold and the coverage it gives.
    conformal: ConformalSets | None = None
    # An exported model: the onnxruntime session that replaces `members`.
    graph: Any = None
    # The unfamiliar-image detector (None: the run fitted none for this model).
    unfamiliar: UnfamiliarCheck | None = None
    # The run folder it was loaded from (None: an export, which holds no training sample).
    run: RunFolder | None = None

    def decode(self, image: ImageInput, threads: int = 1) -> tuple[np.ndarray, ImageFacts]:
        """One image (a path, an open binary file, a PIL image or a uint8 array) as the run
        decoded its own: uint8 (H, W, C) at the data's size, and its facts (hashes); an
        unusable image is a UserError with the reason. `threads`: how many images are
        decoded at once beside this one (they share the pixel limit's memory)."""
        try:
            if isinstance(image, Path | str | IOBase):
                with read_raster(image, threads=threads, follow_links=False,
                                 frame=self.decode_settings.frame) as raster:
                    pixels, facts = preprocess(raster, self.decode_settings)
            else:
                if isinstance(image, np.ndarray):
                    image = Image.fromarray(image)
                pixels, facts = preprocess(Raster.of(image), self.decode_settings)
        except UserError as exc:
            raise UserError(f"cannot read image: {exc}") from None
        except Exception as exc:  # PIL raises many types for unusable images
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise UserError(f"cannot read image: {type(exc).__name__}: {text}".rstrip(": ")
                            ) from None
        return with_channels(pixels, self.decode_settings.channels), facts

    def training_copy(self, pixels: np.ndarray, facts: ImageFacts) -> str | None:
        """Which training or validation image this one duplicates, if any."""
        return self.training.match(pixels, facts) if self.training is not None else None

    def probabilities(self, pictures: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities of uint8 (N, H, W, C) decoded pictures; an ensemble
        averages its members' probabilities, and test-time augmentation its views', as the
        run did."""
        return self.read(pictures)[0]

    @torch.no_grad()
    def read(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The probabilities of `pictures` (see `probabilities`) and, with a detector,
        their unfamiliarity scores, from the features of the same forward pass (the first
        view's, with test-time augmentation)."""
        if self.graph is not None:
            try:
                outputs = self.graph.run(None, {"images": np.ascontiguousarray(pictures)})
            except Exception as exc:  # onnxruntime's errors for a graph that does not fit
                raise UserError(f"the export's graph failed on these images: "
                                f"{str(exc).splitlines()[0][:200]}") from None
            return outputs[0], outputs[1] if len(outputs) > 1 else None
        per_view, features = [], None
        for index, (model, output) in enumerate(self.members):
            images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2)
            images = images.to(model.device)
            targets = torch.zeros(len(images), dtype=torch.long, device=model.device)

            def seen(transform: Transform | None, model: LoadedModel = model,
                     output: str = output, images: torch.Tensor = images,
                     targets: torch.Tensor = targets) -> torch.Tensor:
                inputs = model.pipeline(images, targets, train=False, transform=transform)
                return OUTPUTS.get(output).probabilities(model.module(inputs))

            reading = self.unfamiliar is not None and index == 0
            with (reading_features(model.module) if reading else nullcontext([])) as read:
                per_view.append(averaged(seen, self.views).cpu().numpy())
            if read:
                features = read[0].numpy()
        mean = np.mean(per_view, axis=0) if len(per_view) > 1 else per_view[0]
        probabilities = mean if self.temperature is None else scaled(mean, self.temperature)
        scores = (self.unfamiliar.scores(features, pictures)
                  if self.unfamiliar is not None and features is not None else None)
        return probabilities, scores

    def prediction_set(self, prob: np.ndarray) -> list[str] | None:
        """The classes of one image's conformal set (None without `evaluate.conformal`)."""
        if self.conformal is None:
            return None
        members = prediction_sets(prob[None], self.conformal.score,
                                  self.conformal.threshold)[0]
        order = np.argsort(-prob, kind="stable")
        return [self.classes[k] for k in order if members[k]]

    def predict(self, images: list[ImageInput]) -> list[Any]:
        """Predictions for paths, open binary files, PIL images or uint8 arrays, with the
        same numbers as `visionbench predict` (one code path); an unusable image gets its
        reason."""
        from visionbench.predict.stream import predict_items

        return list(predict_items(self, list(images)))

    def check_shift(self, images: list[ImageInput]) -> tuple[SplitShift, str]:
        """Whether `images` come from the distribution of the run's training images: the
        run's shift test against its training sample (`predict --check-shift`), and its
        sentence."""
        from visionbench.predict.shift import check_shift

        return check_shift(self, list(images))

    def explain(self, image: ImageInput, method: str | None = None, target: str | None = None
                ) -> Explanation:
        """A heat map of what the model used to call `image` `target` (default: its
        prediction), by `method` (default: the run's most faithful one, the lowest deletion
        score), over the image as the model sees it. An ensemble is explained through its
        first member."""
        if self.graph is not None:
            raise UserError("an exported model is explained from its run folder: "
                            f"visionbench.load('{self.card.source_run}').explain(...)")
        model, output = self.members[0]
        pixels = np.array(self.decode(image)[0][None])  # a writable copy, for torch
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        batch = batch.to(model.device)
        inputs = model.pipeline(batch, torch.zeros(1, dtype=torch.long, device=model.device),
                                train=False)
        if target is None:
            target = self.classes[int(self.probabilities(pixels)[0].argmax())]
        # A one-logit (sigmoid) model has one output to explain, that of the positive class.
        index = 0 if output == "sigmoid" else self.classes.index(target)
        method = method or self.faithful_method or "gradcam"
        layer = find_layer(model.module, self.gradcam_layer)[1] if method == "gradcam" else None
        maps = explain(model.module, inputs, torch.tensor([index], device=model.device), method,
                       ExplainSettings(), layer)
        model.module.zero_grad(set_to_none=True)
        seen = model.pipeline.at_model_size(batch).clamp(0, 1).mul(255).round().byte()
        return Explanation(method=method, target=target, map=maps[0].cpu().numpy(),
                           image=seen[0].permute(1, 2, 0).cpu().numpy(),
                           faithful=self.faithful)

    @property
    def positive_indices(self) -> list[int]:
        """Class indices read as positive (empty without a positive reading)."""
        return [self.classes.index(c) for c in self.positive or []]


def load(run_dir: Path | str, model: str | None = None) -> Predictor:
    """Model `model` of the run in `run_dir` (default: the run's recommended model), or the
    model of an export folder (`visionbench export`), which needs onnxruntime, not the run."""
    exported = ExportFolder(Path(run_dir))
    if exported.is_export():
        loaded = _load_export(exported.check())
        if model is not None and model != loaded.name:
            raise UserError(f"{run_dir} is an export of one model only: {loaded.name}")
        return loaded
    run = RunFolder(Path(run_dir)).check()
    data = run.require(DataRecord)
    states = run.model_states()
    if model is None:
        comparison = run.read(Comparison)
        model = comparison.recommended if comparison else None
        if model is None and states and all(not s.startswith("ok") for s in states.values()):
            raise UserError(f"every model of {run_dir} failed, so there is nothing to predict "
                            f"with: {_listed(states)}")
        if model is None:
            raise UserError(f"{run_dir} recommends no model (evaluate it with `visionbench "
                            "evaluate` first, or name one with --model)")
    folder = run.model(model)
    metrics = folder.read(ModelMetrics)
    if metrics is None and model not in states:
        raise UserError(f"{run_dir} has no model {model!r}; its models: {_listed(states)}")
    if metrics is None or not metrics.ok:
        others = {name: state for name, state in states.items() if name != model}
        raise UserError(f"model {model} of {run_dir} did not finish training "
                        f"({states.get(model, 'not trained')}): nothing to predict with; the "
                        f"run's other models: {_listed(others)}")
    # An ensemble averages models of the run; a fold ensemble its fold models; a test-time
    # augmentation row its model's views.
    if metrics.fold_ensemble:
        folders = folder.folds()
        names = [f"{model} fold {k + 1}" for k in range(len(folders))]
    else:
        names = metrics.networks
        folders = [run.model(name) for name in names]
    if metrics.external:
        raise UserError(f"model {model} of {run_dir} was evaluated from {metrics.external}, "
                        "a model trained elsewhere: visionbench keeps its scores, not the "
                        "model; predict with that file in its own runtime")
    members, cards = [], []
    for member in folders:
        card = member.read(ModelCard)
        if card is None:
            raise UserError(f"{member.path} has no model card (written by visionbench before "
                            "model cards existed): retrain the model to predict with it")
        members.append((load_trained(member, card), card.output))
        cards.append(card)
    saved = _saved_data(run)
    predictor = Predictor(name=model, classes=data.classes, card=cards[0], members=members,
                          members_names=names, member_cards=cards,
                          decode_settings=_decode_settings(run, saved, data), run=run)
    if metrics.tta:
        predictor.views = list(metrics.tta.views)
    _readings(predictor, folder, data)
    if not metrics.fold_ensemble:
        # One network (itself, or the model its test-time augmentation row averages), or
        # an ensemble's first member: the members learnt from the same training images and
        # set their thresholds on the same validation images, so one member's detector
        # (with the generic embedding's) says whether an image is unlike them. Fold models
        # have none (the folds share no validation split).
        detector = folders[0].read(Unfamiliar)
        if detector is not None:
            predictor.unfamiliar = UnfamiliarCheck(
                detector.method, detector.threshold, detector.keep,
                _scorer(run, folders[0], detector, members[0][0].device))
    hashes = run.read(TrainingHashes)
    if hashes is None:
        predictor.notes.append("this run folder has no training hashes (written before "
                               "they were kept): duplicates of training images are not "
                               "flagged")
    else:
        root = Path(saved["path"]).expanduser() if isinstance(saved.get("path"), str) \
            and saved.get("source") in FILE_SOURCES else None
        predictor.training = TrainingIndex(hashes, lambda image_id: _training_pixels(
            predictor, training_file(root, image_id)))
    return predictor


def _scorer(run: RunFolder, folder: ModelFolder, detector: Unfamiliar,
            device: torch.device) -> Scorer:
    """The scorer of `folder`'s detector, with the run's generic detector when it was
    combined with it, on `device`."""
    generic = None
    if detector.generic:
        document = run.read(GenericUnfamiliar)
        if document is None:
            raise UserError(f"{run.path} has no unfamiliar_generic.json, which the detector "
                            f"of {folder.path.name} needs: run `visionbench run` again")
        generic = (document.method,
                   run.read_generic_unfamiliar_arrays(document.arrays_checksum),
                   embedding.generic_embedding(str(device)))
    scorer = Scorer(detector.method, folder.read_unfamiliar_arrays(detector.arrays_checksum),
                    generic)
    return scorer.to(device).eval()


# What an exported graph gives: probabilities, and unfamiliarity when it has a detector.
GRAPH_OUTPUTS = (["probabilities"], ["probabilities", "unfamiliar"])


def _onnx_session(onnxruntime: Any, folder: ExportFolder) -> Any:
    """The export's graph in onnxruntime, if it is the kind `visionbench export` writes:
    self-contained (no external data files, which could name any file), operators
    onnxruntime knows, uint8 images of rank 4 in, probabilities (and unfamiliarity) out."""
    where = f"{folder.onnx} is not a graph visionbench exported"
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            graph = onnx.load(str(folder.onnx), load_external_data=False).graph
        except Exception as exc:  # protobuf raises its own kinds for damaged files
            raise UserError(f"{where}: {type(exc).__name__}") from None
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
            raise UserError(f"{where}: it reads external data files")
    try:
        session = onnxruntime.InferenceSession(str(folder.onnx),
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors for damaged or unknown graphs
        raise UserError(f"{where}: {str(exc).splitlines()[0][:200]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if ([i.name for i in inputs] != ["images"] or inputs[0].type != "tensor(uint8)"
            or len(inputs[0].shape) != 4 or [o.name for o in outputs] not in GRAPH_OUTPUTS):
        raise UserError(f"{where}: it must take uint8 'images' (N, H, W, C) and give "
                        "'probabilities' (and 'unfamiliar')")
    return session


def _load_export(folder: ExportFolder) -> Predictor:
    """A Predictor over an export's ONNX graph and card."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("predicting with an export needs onnxruntime: pip install "
                        "'visionbench[onnx]'") from None
    card = folder.require(ExportCard)
    session = _onnx_session(onnxruntime, folder)
    settings = card.decode
    predictor = Predictor(name=card.model, classes=card.classes, card=card, members=[],
                          members_names=[m.model for m in card.members],
                          decode_settings=settings, positive=card.positive_classes,
                          threshold=card.threshold, margin=card.margin,
                          margin_note=card.margin_note, graph=session,
                          conformal=card.conformal)
    scored = len(session.get_outputs()) > 1
    if scored != (card.unfamiliar is not None):
        raise UserError(f"{folder.onnx} and {folder.file(ExportCard)} disagree on the "
                        "unfamiliar-image detector: export the model again")
    if card.unfamiliar is not None:
        predictor.unfamiliar = UnfamiliarCheck(card.unfamiliar.method,
                                               card.unfamiliar.threshold, card.unfamiliar.keep)
    hashes = folder.read(ExportTrainingHashes)
    if hashes is None:
        predictor.notes.append("this export holds no training hashes: duplicates of training "
                               "images are not flagged")
    else:
        # The training images are not in an export: near copies are found by hash only.
        predictor.training = TrainingIndex(hashes, lambda image_id: None)
    return predictor


# Sources whose image ids are file paths under `data.path`.
FILE_SOURCES = ("folder", "presplit", "csv")


def _saved_data(run: RunFolder) -> dict[str, Any]:
    """The `data:` section of the run's saved config."""
    try:
        saved = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
        return dict(saved["data"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot read the data settings from {run.config_file}: "
                        f"{str(exc).splitlines()[0]}") from None


def _decode_settings(run: RunFolder, saved: dict[str, Any], data: DataRecord
                     ) -> PreprocessConfig:
    """The decode settings the run used: its saved `data.preprocess`, at the size its data
    record shows (a run that kept the images' own size decoded at that size)."""
    try:
        settings = PreprocessConfig.model_validate(saved.get("preprocess") or {})
    except ValueError as exc:
        raise UserError(f"cannot read the decode settings from {run.config_file}: "
                        f"{str(exc).splitlines()[0]}") from None
    return settings.model_copy(update={"size": tuple(data.image_shape)})


def _training_pixels(predictor: Predictor, path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return predictor.decode(path)[0]
    except UserError:
        return None


def _listed(states: dict[str, str]) -> str:
    """The run's models with their states, for an error message."""
    return "; ".join(f"{name} ({state})" for name, state in states.items()) or "none"


def _readings(predictor: Predictor, folder: ModelFolder, data: DataRecord) -> None:
    """The positive reading's threshold (from the evaluation), the uncertainty margin (from
    the validation predictions) and the most faithful explanation method (from the
    explanations' deletion scores)."""
    explanations = folder.read(Explanations)
    deletion = explanations.deletion if explanations else {}
    scores = {m: v for m, v in deletion.items() if m != "random"}
    if explanations and scores:
        predictor.faithful_method = min(scores, key=scores.__getitem__)
        predictor.faithful = (None if "random" not in deletion else
                              predictor.faithful_method not in unfaithful_methods(deletion))
        predictor.gradcam_layer = explanations.gradcam_layer
    evaluation = folder.read(EvaluationDocument)
    if evaluation is not None and evaluation.temperature:
        predictor.temperature = evaluation.temperature.value
    if evaluation is not None and evaluation.conformal:
        conformal = evaluation.conformal
        predictor.conformal = ConformalSets(score=conformal.score, threshold=conformal.threshold,
                                            coverage=conformal.coverage_target)
    clinical = evaluation.clinical if evaluation else None
    if clinical:
        predictor.positive = clinical.positive_classes
        chosen = clinical.chosen_threshold
        predictor.threshold = chosen.threshold if chosen else 0.5
    if folder.has_predictions("val"):
        val = with_temperature(folder.read_predictions("val", data.classes,
                                                       folder.read(ModelMetrics)),
                               predictor.temperature)
        predictor.margin = choose_margin(val)
        predictor.margin_note = (
            f"uncertain below {predictor.margin:.3f}: above it, validation images were right "
            f"at least {TARGET_ACCURACY:.0%} of the time" if predictor.margin is not None else
            f"no margin: even the most confident validation images are right less than "
            f"{TARGET_ACCURACY:.0%} of the time")
    else:
        predictor.margin_note = "no margin: the model has no validation predictions"
