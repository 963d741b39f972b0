"""The strict base of every config section, and fields whose value names a registry entry.

A registry is looked up by its kind at validation time (`visionbench.registry.catalogue`),
so a schema never imports the module that fills the registry: that module sits higher up.
`visionbench.config` validates a config twice: first its structure alone, with names not
looked up (`STRUCTURE_ONLY` in the validation context), so a misspelt key is refused before
the registering modules (torch, Captum, timm) are imported; then, with them imported, the
names.

Example:
    >>> from typing import Annotated
    >>> from visionbench.registry import Registry
    >>> COLOURS = Registry("colour")
    >>> _ = COLOURS.register("red")(1)
    >>> class Paint(StrictModel):
    ...     colour: Annotated[str, Registered("colour")]
    >>> try:
    ...     Paint(colour="rde")
    ... except ValueError as exc:
    ...     print(exc.errors()[0]["msg"])
    unknown colour 'rde'; did you mean 'red'? known: red
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from visionbench.registry import catalogue

# Validation context key: check keys and values, not the names registries hold.
STRUCTURE_ONLY = "structure_only"


def structure_only(info: core_schema.ValidationInfo) -> bool:
    """Whether this validation checks the config's structure alone (names come later)."""
    return bool(info.context and info.context.get(STRUCTURE_ONLY))


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Registered:
    """`Annotated[str, Registered(kind)]`: the value must be a name in registry `kind`."""

    kind: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str, info: core_schema.ValidationInfo) -> str:
        if structure_only(info):
            return value
        registry = catalogue(self.kind)
        if value not in registry:
            raise PydanticCustomError("registry_name", "{problem}",
                                      {"problem": registry.unknown(value)})
        return value
