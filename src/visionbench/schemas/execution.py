"""How the models of a run are executed (`execution:`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from visionbench.schemas.base import Registered, StrictModel


class ExecutionConfig(StrictModel):
    """Where each model of a run trains: `local` (one after the other in this process, the
    default) or `ray` (every model an independent Ray task, in parallel; a local Ray starts
    by itself, or `address` joins a running cluster, whose workers must see the data and
    the run folder at the same paths).

    `cpus` and `gpus` are what one task asks Ray for; a fraction of a GPU lets several small
    models share one device. `local_cpus` caps the CPUs of a Ray started here."""

    executor: Annotated[str, Registered("executor")] = "local"
    address: str | None = None
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    local_cpus: int | None = Field(None, ge=1)
