"""A model family is one registered class: a toy family, registered here, runs through
run -> evaluate -> report -> explain without any other change."""

from __future__ import annotations

import pytest
from pydantic import Field
from torch import nn

from visionbench.config import config_from_dict
from visionbench.errors import UserError
from visionbench.evaluate.leaderboard import evaluate_folder
from visionbench.models.family import (
    FAMILIES,
    Base,
    DataFacts,
    ModelFamily,
    params_of,
    register_family,
    resolve_input,
)
from visionbench.orchestrate import run_config
from visionbench.orchestrate.explain import explain_run
from visionbench.report.build import build_report
from visionbench.rundir import Explanations, Leaderboard, ModelCard
from visionbench.schemas.base import StrictModel
from visionbench.schemas.models import ModelConfig


class ToyParams(StrictModel):
    width: int = Field(4, ge=1)


class ToyFamily(ModelFamily):
    """Two convolutions and a global pool: small enough to train in a second."""

    name = "toy"
    summary = "a toy network"
    params = ToyParams

    def base(self, config: ModelConfig, facts: DataFacts, *, pretrained: bool = True) -> Base:
        width = params_of(config).width
        height, w, channels = facts.image_shape
        first, last = nn.Conv2d(channels, width, 3, padding=1), nn.Conv2d(width, width, 1)
        module = nn.Sequential(first, nn.ReLU(), last, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        spec = resolve_input(config, (height, w), channels, facts.mean, facts.std,
                             facts.per_image)
        return Base(module, (width,), spec, blocks=[[first], [last]])

    def gradcam_layer(self, config: ModelConfig) -> str | None:
        # The first convolution, where the default would take the last one.
        return "base.0"


if "toy" not in FAMILIES:
    register_family(ToyFamily)

FAST = {"epochs": 1, "progress": "quiet", "batch_size": 16}
EVALUATE = {"bootstrap": 50, "robustness": {"noise": [0.1]}, "error_examples": 2,
            "explain": {"images": 2, "steps": 2, "samples": 2,
                        "methods": ["gradcam", "occlusion"]}}


def _config(tmp_path, models):
    return config_from_dict({
        "data": {"source": "digits", "split": {"limit_per_class": 12}},
        "models": models, "train": FAST, "evaluate": EVALUATE,
        "output": {"dir": str(tmp_path / "runs")}})


def test_a_family_registered_by_a_test_runs_evaluates_reports_and_explains(tmp_path,
                                                                           monkeypatch):
    config = _config(tmp_path, {"toy": {"family": "toy", "params": {"width": 6}},
                                "mlp": {"preset": "mlp"}})
    result = run_config(config, report=lambda _: None)
    assert {name: m.ok for name, m in result.models.items()} == {"toy": True, "mlp": True}
    card = result.run.model("toy").require(ModelCard)
    assert card.family == "toy" and card.config["params"] == {"width": 6}
    # RGB digits: a 3x3 convolution, a 1x1 one, the output layer.
    assert result.models["toy"].parameters == (6 * 3 * 9 + 6) + (6 * 6 + 6) + (6 * 10 + 10)
    board = evaluate_folder(result.run, config.evaluate, ["toy", "mlp"])
    assert {row.model for row in board.rows} == {"toy", "mlp"}
    assert result.run.require(Leaderboard).rows == board.rows
    assert "Model toy" in build_report(result.run)

    # Explaining reads the stored card and decodes only the images explained: the bulk
    # decoder (which every training run goes through) must not be called.
    import visionbench.data.dataset as dataset

    def refuse(*args, **kwargs):
        raise AssertionError("explain decoded the dataset")

    monkeypatch.setattr(dataset, "decode", refuse)
    monkeypatch.setattr(dataset, "prepare_data", refuse)
    explain_run(result.folder, "toy")
    found = result.run.model("toy").require(Explanations)
    assert found.error is None and len(found.images) == 2
    assert "gradcam" in found.deletion and found.gradcam_layer == "base.0"


def test_a_family_checks_its_own_params_at_load(tmp_path):
    with pytest.raises(UserError, match=r"params.width: Input should be greater than or equal"):
        _config(tmp_path, {"toy": {"family": "toy", "params": {"width": 0}}})
    with pytest.raises(UserError, match="`layers` does not apply to the toy family"):
        _config(tmp_path, {"toy": {"family": "toy", "layers": [{"type": "flatten"}]}})
    with pytest.raises(UserError, match="the cnn family takes no `params`"):
        _config(tmp_path, {"m": {"preset": "mlp", "params": {"width": 3}}})
