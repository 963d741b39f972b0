"""Where everything lives in a run folder, and the only code that reads or writes it.

    <run>/config.yaml, data.json, run.json, comparison.json, report.html,
          leaderboard.json (+ .csv, .md renderings), data/inspect.json + charts,
          unfamiliar_generic.json (+ .safetensors), shift.json, shift_reference.safetensors
    <run>/<model>/model.json, metrics.json, history.json, evaluation.json, errors.json,
                  robustness.json, explanations.json, predictions.csv, predictions_val.csv,
                  model.safetensors, unfamiliar.json (+ .safetensors), checkpoints/,
                  repeats/<k>/, explained/, pictures

Documents are typed (`visionbench.rundir.documents`), written atomically and validated when
read; a missing document reads as None where absence is normal, a damaged one is a
one-line `UserError` that names the file.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> run = RunFolder(Path(tempfile.mkdtemp()))
    >>> run.model("small_cnn").write(ModelMetrics(model="small_cnn", status=Status.OK))
    >>> run.model("small_cnn").read(ModelMetrics).ok
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from visionbench.errors import UserError
from visionbench.fileio import atomic_dir, atomic_path, write_json, write_text
from visionbench.rundir.documents import (
    SCHEMA_VERSION,
    Document,
    EvaluationDocument,
    History,
    ModelCard,
    ModelMetrics,
    RunDocument,
    Status,
)
from visionbench.rundir.predictions import Predictions, read_predictions, write_predictions

D = TypeVar("D", bound=Document)

CONFIG = "config.yaml"
REPORT = "report.html"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
DATA_DIR = "data"
EXPORTS = "export"
MLFLOW_STORE = "mlflow.db"
TENSORBOARD = "tensorboard"
CLASS_CHART = "class_distribution.png"
DUPLICATE_PAIRS = "duplicate_pairs.png"
LABEL_ISSUES_CHART = "label_issues.png"
SAMPLES = "samples_{label}.png"
PREDICTIONS = {"test": "predictions.csv", "val": "predictions_val.csv"}
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.safetensors"
UNFAMILIAR_ARRAYS = "unfamiliar.safetensors"
GENERIC_UNFAMILIAR_ARRAYS = "unfamiliar_generic.safetensors"
SHIFT_REFERENCE = "shift_reference.safetensors"
ERROR_LOG = "error.txt"
REPEATS = "repeats"
FOLDS = "folds"
SWEEP = "sweep"
SWEEP_JOURNAL = "journal.log"
EXPLAINED = "explained"
LR_FIND = "lr-find"
EARLIER = "earlier"
# The pictures of a model folder, by what they show.
PICTURES = {"misclassified": "misclassified.png", "top_losses": "top_losses.png",
            "error_rate": "error_rate.png", "explanations": "explanations.png"}


def _checksum(body: dict) -> str:
    """SHA-256 of a document's JSON in a canonical form (sorted keys, no spaces), which
    the parsed file gives back exactly."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def nested(folder: _Folder) -> bool:
    """Whether a model folder is one fold or repeat of a model, or a sweep's trial (not a
    model of the run itself)."""
    return folder.path.parent.name in (FOLDS, REPEATS, SWEEP)


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write named arrays as safetensors (never a pickle), atomically; returns the file's
    checksum, which the document describing them keeps."""
    from safetensors.numpy import save

    with atomic_path(path) as tmp:
        tmp.write_bytes(save({name: np.ascontiguousarray(value)
                              for name, value in arrays.items()}))
    return file_checksum(path)


def read_arrays(path: Path, checksum: str, document: str) -> dict[str, np.ndarray]:
    """The arrays `write_arrays` wrote, checked against `checksum` (from `document`): a
    missing, linked, damaged or swapped file is one line."""
    from safetensors.numpy import load

    if path.is_symlink() or not path.is_file() or file_checksum(path) != checksum:
        raise UserError(f"{path} is missing or does not match {document}: run "
                        "`visionbench run` again to write it afresh")
    return load(path.read_bytes())


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path, kind: type[D]) -> D | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is damaged ({exc}); rerun the step that wrote it") from None
    except RecursionError:
        raise UserError(f"{path} is damaged (nested too deep to be a visionbench document); "
                        "rerun the step that wrote it") from None
    if isinstance(raw, dict) and "checksum" in raw:
        stated = raw.pop("checksum")
        if stated != _checksum(raw):
            raise UserError(f"{path} was changed or damaged after it was written (its checksum "
                            "differs): rerun the step that wrote it, or delete its checksum "
                            "line to accept a deliberate edit")
    version = raw.get("schema_version", 1) if isinstance(raw, dict) else 1
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise UserError(f"{path} was written by a newer visionbench (schema {version}, this "
                        f"one reads {SCHEMA_VERSION}): upgrade visionbench")
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "the document"
        raise UserError(f"{path} is not a valid {kind.FILE} ({where}: {problem['msg']}); "
                        "rerun the step that wrote it") from None


def _write(path: Path, document: Document) -> None:
    body = document.model_dump(mode="python", exclude_unset=True,
                               exclude={"schema_version", "checksum"})
    # Through JSON once, so the checksum is of exactly what a reader parses back.
    payload = json.loads(json.dumps({"schema_version": SCHEMA_VERSION, **body}, default=str))
    write_json(path, {**payload, "checksum": _checksum(payload)})


class _Folder:
    """Typed reads and writes of the documents of one level (run or model)."""

    level: str

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, kind: type[Document]) -> Path:
        """Where document `kind` lives."""
        if self.level != kind.LEVEL:
            raise TypeError(f"{kind.__name__} belongs to a {kind.LEVEL} folder")
        return self.path / kind.FILE

    def read(self, kind: type[D]) -> D | None:
        """Document `kind`, or None when it was not written."""
        return _read(self.file(kind), kind)

    def require(self, kind: type[D]) -> D:
        """Document `kind`; a one-line error names the missing file."""
        document = self.read(kind)
        if document is None:
            raise UserError(f"no {kind.FILE} in {self.path}")
        return document

    def has(self, kind: type[Document]) -> bool:
        """Whether document `kind` was written."""
        return self.file(kind).is_file()

    def write(self, document: Document) -> None:
        """Write `document` atomically."""
        _write(self.file(type(document)), document)

    def refuse_links(self) -> None:
        """A one-line error if anything inside the folder is a symbolic link: visionbench
        never writes one, and a received folder's link could make a reader embed, serve or
        overwrite a file elsewhere (`mlp/misclassified.png -> ~/.ssh/id_rsa`)."""
        links = links_inside(self.path)
        if links:
            shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5
                                            else "")
            raise UserError(f"{self.path} holds symbolic links, which visionbench never "
                            f"writes: {shown}; remove them, or replace each with the file "
                            "it points to if you trust it")


def links_inside(folder: Path) -> list[str]:
    """The symbolic links inside `folder` (relative paths, sorted); links are not followed.

    Example:
        >>> links_inside(Path("/nonexistent"))
        []
    """
    links = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                links.append(str(path.relative_to(folder)))
    return sorted(links)


class ExportFolder(_Folder):
    """An exported model: `model.onnx` and its card `model.json`."""

    level = "export"

    @property
    def onnx(self) -> Path:
        """The ONNX graph."""
        return self.path / "model.onnx"

    def is_export(self) -> bool:
        """Whether the folder holds an export (graph and card)."""
        return self.onnx.is_file() and self.path.joinpath("model.json").is_file()

    def check(self) -> ExportFolder:
        """This folder, if it holds an export and no link; else a one-line error."""
        if not self.is_export():
            raise UserError(f"{self.path} is not an export folder (no model.onnx and "
                            "model.json)")
        self.refuse_links()
        return self


class ModelFolder(_Folder):
    """`<run>/<model>/`: one model's documents, predictions, weights and pictures."""

    level = "model"

    def predictions_file(self, split: str) -> Path:
        """Where the predictions of `split` (test or val) live."""
        return self.path / PREDICTIONS[split]

    def has_predictions(self, split: str = "test") -> bool:
        """Whether predictions of `split` were written."""
        return self.predictions_file(split).is_file()

    def read_predictions(self, split: str, classes: list[str],
                         metrics: ModelMetrics | None = None) -> Predictions:
        """The predictions of `split`; their columns must match `classes`, and their bytes
        the checksum the model's metrics recorded (when they did). `metrics`: the model's,
        when the caller has read them already."""
        path = self.predictions_file(split)
        metrics = metrics or self.read(ModelMetrics)
        stated = metrics.files.get(path.name) if metrics is not None else None
        if stated is not None and path.is_file() and file_checksum(path) != stated:
            raise UserError(f"{path} was changed or damaged after it was written (its "
                            f"checksum differs from {ModelMetrics.FILE}): rerun the model")
        return read_predictions(path, classes)

    def predictions_checksums(self) -> dict[str, str]:
        """SHA-256 of each predictions file written, by file name (for `ModelMetrics`)."""
        return {path.name: file_checksum(path) for path in map(self.predictions_file,
                                                                 PREDICTIONS) if path.is_file()}

    def write_predictions(self, split: str, predictions: Predictions, classes: list[str]
                          ) -> None:
        """Write the predictions of `split` atomically."""
        write_predictions(self.predictions_file(split), predictions, classes)

    @property
    def weights(self) -> Path:
        """The final weights (safetensors)."""
        return self.path / WEIGHTS

    @property
    def unfamiliar_arrays(self) -> Path:
        """The unfamiliar-image detector's arrays (safetensors; `Unfamiliar` describes it)."""
        return self.path / UNFAMILIAR_ARRAYS

    def write_unfamiliar_arrays(self, arrays: dict[str, np.ndarray]) -> str:
        """Write the detector's arrays atomically; returns the file's checksum."""
        return write_arrays(self.unfamiliar_arrays, arrays)

    def read_unfamiliar_arrays(self, checksum: str) -> dict[str, np.ndarray]:
        """The detector's arrays, checked against `checksum` (from `unfamiliar.json`)."""
        return read_arrays(self.unfamiliar_arrays, checksum, "unfamiliar.json")

    @property
    def checkpoints(self) -> Path:
        """The folder of training checkpoints."""
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        """The whole training state after the last finished epoch."""
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def best_weights(self) -> Path:
        """The best epoch's weights by the trainer's monitor."""
        return self.checkpoints / BEST_WEIGHTS

    @property
    def error_log(self) -> Path:
        """The traceback of an unexpected failure."""
        return self.path / ERROR_LOG

    def write_error_log(self, text: str) -> None:
        """Keep the traceback of an unexpected failure beside the model's metrics."""
        write_text(self.error_log, text)

    def picture(self, name: str) -> Path:
        """A picture of the model: misclassified, top_losses, error_rate, explanations."""
        return self.path / PICTURES[name]

    def repeat(self, index: int) -> ModelFolder:
        """The folder of the model's training repeat `index` (seed + index)."""
        return ModelFolder(self.path / REPEATS / str(index))

    def repeats(self) -> list[ModelFolder]:
        """The repeats that wrote test predictions, in order."""
        repeats = [ModelFolder(p.parent) for p in (self.path / REPEATS).glob(
            "*/" + PREDICTIONS["test"])]
        return sorted(repeats, key=lambda folder: folder.path.as_posix())

    def fold(self, index: int) -> ModelFolder:
        """The folder of the model trained with fold `index` as validation (k-fold)."""
        return ModelFolder(self.path / FOLDS / str(index))

    def folds(self) -> list[ModelFolder]:
        """The folds that wrote validation predictions, in fold order."""
        folds = [ModelFolder(p.parent) for p in (self.path / FOLDS).glob(
            "*/" + PREDICTIONS["val"])]
        return sorted(folds, key=lambda folder: int(folder.path.name))

    def repeated_folds(self) -> list[ModelFolder]:
        """The folds of every repeat of the cross-validation (repeat 0's first), in (repeat,
        fold) order: what the per-fold statistics are computed on."""
        folds = self.folds()
        repeats = sorted((p for p in (self.path / REPEATS).glob("*") if (p / FOLDS).is_dir()),
                         key=lambda path: int(path.name))
        for repeat in repeats:
            folds += ModelFolder(repeat).folds()
        return folds

    def keep_final_state(self, epochs: int) -> ModelFolder:
        """Copy the model's final state (card, weights, metrics, history, predictions,
        evaluation) to `earlier/epoch-<epochs>/` before training continues in place; returns
        that folder."""
        kept = ModelFolder(self.path / EARLIER / f"epoch-{epochs}")
        if kept.path.is_dir():
            # Kept by a `continue` that was killed since: the model folder may hold some of
            # the continuation's files by now, so the first copy is the true one.
            return kept
        names = [ModelCard.FILE, ModelMetrics.FILE, History.FILE, EvaluationDocument.FILE,
                 WEIGHTS, *PREDICTIONS.values()]
        with atomic_dir(kept.path) as tmp:
            for name in names:
                if (self.path / name).is_file():
                    shutil.copyfile(self.path / name, tmp / name)
        return kept

    def earlier_states(self) -> list[tuple[int, ModelFolder]]:
        """The final states kept before each `continue`, by their epoch count, oldest first."""
        states = []
        for folder in (self.path / EARLIER).glob("epoch-*"):
            epochs = folder.name.removeprefix("epoch-")
            if epochs.isdigit():
                states.append((int(epochs), ModelFolder(folder)))
        return sorted(states, key=lambda item: item[0])

    @property
    def explained(self) -> ModelFolder:
        """Where `visionbench explain --images` writes (same documents as the model's own)."""
        return ModelFolder(self.path / EXPLAINED)


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# Folder names a run folder uses itself.
RESERVED_NAMES = frozenset({DATA_DIR, CHECKPOINTS})


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a model folder, or None when it can."""
    if SAFE_NAME.fullmatch(name) and name not in RESERVED_NAMES:
        return None
    return ("a model name is letters, digits and _ . + - (starting with a letter or digit), "
            f"and not {' or '.join(sorted(RESERVED_NAMES))}")


class RunFolder(_Folder):
    """`<output.dir>/<name>/<timestamp>/`: a whole run."""

    level = "run"

    @property
    def config_file(self) -> Path:
        """The resolved config with its provenance."""
        return self.path / CONFIG

    @property
    def report_file(self) -> Path:
        """The self-contained HTML report."""
        return self.path / REPORT

    @property
    def data_dir(self) -> Path:
        """Inspection document and charts of the data."""
        return self.path / DATA_DIR

    @property
    def generic_unfamiliar_arrays(self) -> Path:
        """The generic-embedding detector's arrays, shared by the run's models."""
        return self.path / GENERIC_UNFAMILIAR_ARRAYS

    def write_generic_unfamiliar_arrays(self, arrays: dict[str, np.ndarray]) -> str:
        """Write the generic detector's arrays atomically; returns the file's checksum."""
        return write_arrays(self.generic_unfamiliar_arrays, arrays)

    def read_generic_unfamiliar_arrays(self, checksum: str) -> dict[str, np.ndarray]:
        """The generic detector's arrays, checked against `checksum`."""
        return read_arrays(self.generic_unfamiliar_arrays, checksum, "unfamiliar_generic.json")

    @property
    def shift_reference(self) -> Path:
        """The training sample new images are compared with (`ShiftDocument`)."""
        return self.path / SHIFT_REFERENCE

    def write_shift_reference(self, arrays: dict[str, np.ndarray]) -> str:
        """Write the shift test's training sample atomically; returns the file's checksum."""
        return write_arrays(self.shift_reference, arrays)

    def read_shift_reference(self, checksum: str) -> dict[str, np.ndarray]:
        """The shift test's training sample, checked against `checksum`."""
        return read_arrays(self.shift_reference, checksum, "shift.json")

    @property
    def leaderboard_csv(self) -> Path:
        """The leaderboard as CSV (a rendering of `leaderboard.json`)."""
        return self.path / LEADERBOARD_CSV

    def export_folder(self, model: str) -> ExportFolder:
        """Where `visionbench export` puts `model` unless told otherwise."""
        return ExportFolder(self.path / EXPORTS / self.model(model).path.name)

    def sweep_trial(self, number: int) -> ModelFolder:
        """The folder of a sweep's trial `number`."""
        return ModelFolder(self.path / SWEEP / f"trial-{number}")

    @property
    def sweep_journal(self) -> Path:
        """The sweep's Optuna study (a journal file every trial reports to)."""
        return self.path / SWEEP / SWEEP_JOURNAL

    @property
    def mlflow_store(self) -> Path:
        """The SQLite file MLflow logs to unless `tracking.uri` says otherwise."""
        return self.path / MLFLOW_STORE

    def tensorboard_dir(self, model: str) -> Path:
        """TensorBoard's event files of `model`."""
        return self.path / TENSORBOARD / self.model(model).path.name

    def check(self) -> RunFolder:
        """This folder, if it is a run folder; else a one-line error."""
        if not self.config_file.is_file():
            raise UserError(f"{self.path} is not a run folder (no {CONFIG})")
        self.refuse_links()
        return self

    def model(self, name: str) -> ModelFolder:
        """The folder of model `name`."""
        problem = name_problem(name)
        if problem is not None:
            raise UserError(f"model name {name!r} cannot name a folder: {problem}")
        return ModelFolder(self.path / name)

    def model_states(self) -> dict[str, str]:
        """Each model of the run with its state as a phrase (`ok`, `failed: why`,
        `interrupted: ...`), from run.json, or from the model folders when it is missing."""
        document = self.read(RunDocument)
        if document is not None:
            return {name: entry.status.value + (f": {entry.error}" if entry.error else "")
                    for name, entry in document.models.items()}
        statuses = {}
        for folder in sorted(p for p in self.path.iterdir() if p.is_dir()):
            metrics = ModelFolder(folder).read(ModelMetrics)
            if metrics is not None:
                statuses[folder.name] = metrics.status.value + (
                    f": {metrics.error}" if metrics.error else "")
        return statuses

    def outcomes(self, names: list[str]) -> dict[str, ModelMetrics]:
        """The metrics of those of `names` that have run (finished or failed)."""
        outcomes = {}
        for name in names:
            metrics = self.model(name).read(ModelMetrics)
            if metrics is not None:
                outcomes[name] = metrics
        return outcomes

    def finished(self, name: str) -> ModelMetrics | None:
        """Model `name`'s metrics if it finished and has test predictions."""
        folder = self.model(name)
        metrics = folder.read(ModelMetrics)
        ok = metrics is not None and metrics.status is Status.OK and folder.has_predictions()
        return metrics if ok else None

    def write_leaderboard_renderings(self, csv_text: str, markdown: str) -> None:
        """The CSV and Markdown renderings of the leaderboard."""
        write_text(self.path / LEADERBOARD_CSV, csv_text)
        write_text(self.path / LEADERBOARD_MD, markdown)

    def write_report(self, html: str) -> Path:
        """Write report.html atomically."""
        write_text(self.report_file, html)
        return self.report_file

    def sample_charts(self) -> list[Path]:
        """The per-class sample grids of the data, sorted."""
        return sample_charts(self.data_dir)


def class_chart(folder: Path) -> Path:
    """The class-distribution chart in an inspection folder."""
    return folder / CLASS_CHART


def label_issues_chart(folder: Path, split: str = "val") -> Path:
    """The thumbnails of suspected label errors in a data folder (of the training images
    scored on validation or out of fold; or, for `test`, of the test split)."""
    return folder / (LABEL_ISSUES_CHART if split == "val" else
                     LABEL_ISSUES_CHART.replace(".png", f"_{split}.png"))


def duplicate_pairs_chart(folder: Path) -> Path:
    """The example duplicate pairs, side by side, in an inspection folder."""
    return folder / DUPLICATE_PAIRS


def sample_chart(folder: Path, label: str) -> Path:
    """The sample grid of class `label` (made safe for a file name) in an inspection folder."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    return folder / SAMPLES.format(label=safe)


def sample_charts(folder: Path) -> list[Path]:
    """Every sample grid in an inspection folder, sorted."""
    return sorted(folder.glob(SAMPLES.format(label="*")))


def lr_find_files(output_dir: Path, config_name: str, model: str) -> tuple[Path, Path]:
    """Where `visionbench lr-find` draws model `model`'s curve and writes its numbers:
    `<output.dir>/<config name>/lr-find/<model>.png` and `.json`, beside the config's runs."""
    problem = name_problem(model)
    if problem is not None:
        raise UserError(f"model name {model!r} cannot name a file: {problem}")
    folder = output_dir / config_name / LR_FIND
    return folder / f"{model}.png", folder / f"{model}.json"
