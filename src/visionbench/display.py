"""How numbers, intervals, confidence levels and lists are written, everywhere they are
shown (terminal, Markdown, report, results page), so each reads the same.

Example:
    >>> interval({"value": 0.86667, "low": 0.8361, "high": 0.8972})
    '0.8667 [0.836, 0.897]'
    >>> level(0.95), number(float("nan"))
    ('95 %', '–')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MISSING = "–"


def _value(entry: Any, key: str) -> float | None:
    found = entry.get(key) if isinstance(entry, Mapping) else getattr(entry, key, None)
    return None if found is None or (isinstance(found, float) and math.isnan(found)) else found


def number(value: float | None, digits: int = 4) -> str:
    """`value` with `digits` decimals; a dash when it is absent or undefined (NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def bounds(entry: Any, digits: int = 3) -> str | None:
    """`[low, high]` of an interval entry (a mapping or an `Interval`), None without one."""
    low, high = _value(entry, "low"), _value(entry, "high")
    if low is None or high is None:
        return None
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def interval(entry: Any, digits: int = 4, bound_digits: int = 3) -> str:
    """`value [low, high]`, or the value alone without bounds, or a dash."""
    if entry is None:
        return MISSING
    value = number(_value(entry, "value"), digits)
    around = bounds(entry, bound_digits)
    return value if around is None or value == MISSING else f"{value} {around}"


def p_value(value: float | None, resamples: int | None = None) -> str:
    """A p-value as it can be read: a bootstrap p at its floor (1 / resamples) is written
    `< floor`, since the resamples cannot resolve it further; a very small exact one in
    scientific notation.

    Example:
        >>> p_value(0.001, 1000), p_value(0.0012, 1000), p_value(4.5e-9), p_value(0.2)
        ('< 0.001', '0.001', '4.5e-09', '0.200')
    """
    if value is None or math.isnan(value):
        return MISSING
    if resamples and value <= 1 / resamples:
        return f"< {1 / resamples:g}"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def level(confidence: float) -> str:
    """A confidence level as people write it: 0.95 -> `95 %`."""
    return f"{confidence * 100:g} %"


def megabytes(size: int) -> str:
    """A size in bytes as megabytes, one decimal: 1536000 -> `1.5 MB`."""
    return f"{size / 1e6:.1f} MB"


def names(items: Iterable[str]) -> str:
    """Classes or models as one comma-separated list."""
    return ", ".join(items)


def plotly_text(text: str) -> str:
    """`text` as plotly shows it literally: plotly draws a subset of HTML in every text it
    renders (tick labels, legend names, titles, hover), so a class named
    `<a href="...">` would become a link; its `<`, `>` and `&` become entities.

    Example:
        >>> plotly_text('<a href="https://x">verify</a> & more')
        '&lt;a href="https://x"&gt;verify&lt;/a&gt; &amp; more'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plotly_safe(value: Any) -> Any:
    """A plotly figure (or any part of one) with every string made literal by
    `plotly_text`; numbers, colours and plotly's own keywords are unchanged (they hold no
    `<`, `>` or `&`)."""
    if isinstance(value, str):
        return plotly_text(value)
    if isinstance(value, Mapping):
        return {key: plotly_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plotly_safe(item) for item in value]
    return value
