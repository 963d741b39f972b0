"""`visionbench explain`: maps for a trained model of a run, from its folder alone (its card,
weights and predictions); only the images explained are decoded."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from visionbench.config import Config, load_config
from visionbench.data.dataset import load_images
from visionbench.data.decode import decode_item, with_channels
from visionbench.errors import UserError
from visionbench.evaluate.model_explanations import explain_images, explain_test_set
from visionbench.orchestrate.plan import explain_settings
from visionbench.rundir.documents import DataRecord, ModelCard, ModelMetrics
from visionbench.rundir.layout import RunFolder
from visionbench.runtime.trained import load_trained
from visionbench.schemas.inputs import InputSpec


def legacy_card(run: RunFolder, config: Config, name: str) -> ModelCard:
    """The card of a model folder written before cards existed, from the run's records."""
    metrics = run.model(name).require(ModelMetrics)
    data = run.require(DataRecord)
    model = config.models[name]
    stored = metrics.input
    if stored is None:
        raise UserError(f"model {name} of {run.path} records no input settings: it cannot be "
                        "rebuilt; train it again")
    spec = InputSpec(size=tuple(stored.size), channels=stored.channels,
                     mean=tuple(stored.mean), std=tuple(stored.std),
                     per_image=bool(stored.per_image), resize=model.input.resize)
    return ModelCard(model=name, family=model.family_name, classes=data.classes, input=spec,
                     output=model.output, config=model.model_dump(mode="json"))


def explain_run(path: Path, name: str, files: list[Path] | None = None,
                methods: list[str] | None = None) -> Path:
    """Explanation maps for model `name` of the run in `path`; returns the output folder.

    Without `files`, the default test images are explained again into the model folder
    (what the report shows); with `files`, into `<model>/explained/`.
    """
    run = RunFolder(path).check()
    config = load_config(run.config_file)
    if name not in config.models:
        raise UserError(f"no model {name!r} in this run; models: {list(config.models)}")
    settings = explain_settings(config, name)
    if methods:
        settings = settings.model_copy(update={"methods": methods})
    folder = run.model(name)
    card = folder.read(ModelCard) or legacy_card(run, config, name)
    model = load_trained(folder, card)
    size = tuple(run.require(DataRecord).image_shape)
    if not files:
        predictions = folder.read_predictions("test", card.classes)
        settings = settings.model_copy(update={"images": settings.images or 8})
        found = explain_test_set(model, card.classes, predictions, settings, folder,
                                 partial(load_images, config.data, size=size))
        folder.write(found)
        return folder.path
    out = folder.explained
    decode = config.data.preprocess.model_copy(update={"size": size})
    pictures = with_channels(np.stack([decode_item(file, decode) for file in files]),
                             decode.channels)
    found = explain_images(model, pictures, [file.name for file in files],
                           [str(file) for file in files], None, settings, out)
    out.write(found)
    return out.path
