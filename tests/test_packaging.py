"""The dev extra installs every optional extra, so CI (which installs `.[dev]`) runs the
tests of each: an extra left out of dev would let its tests go untested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Python 3.11's reader of pyproject.toml (the project supports 3.10, where it is absent).
tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_dev_extra_holds_every_optional_extra():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    dev = _names(extras["dev"])
    missing = {name: sorted(_names(found) - dev) for name, found in extras.items()
               if name != "dev" and _names(found) - dev}
    assert missing == {}
