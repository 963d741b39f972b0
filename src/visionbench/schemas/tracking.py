"""Where a run is logged besides its run folder (`tracking:`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from visionbench.schemas.base import Registered, StrictModel


class TrackingConfig(StrictModel):
    """Experiment trackers the finished run is logged to: `tracking: [mlflow, tensorboard]`,
    or with settings: `tracking: {to: [mlflow], uri: http://mlflow.example:5000}`.

    `uri` is MLflow's tracking URI (default: `sqlite:///<run folder>/mlflow.db`);
    `experiment` its experiment name (default: the run's name)."""

    to: list[Annotated[str, Registered("tracker")]] = Field(default_factory=list)
    uri: str | None = None
    experiment: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"to": value} if isinstance(value, list) else value
