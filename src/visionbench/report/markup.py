"""The report's one escaping layer: `Html`, markup that escapes every value put into it.

A section writes its markup as `Html` templates with literal text (`Html("<td>{}</td>")`)
and puts values in with `format`, `+` or `join`, which escape whatever is not already
`Html`; `Page.add` takes nothing else. So no name, path or sentence from a run folder can
reach the page as markup, and no section escapes by hand (a test reads every section's
source and refuses an `Html` made from anything but a literal).

The entities are those of the standard library's `html.escape` (`&quot;`, `&#x27;`), so the
page's bytes are what they were when each call escaped by hand.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from markupsafe import Markup

from visionbench import display
from visionbench.rundir.documents import Interval


class Html(Markup):
    """Markup whose `format`, `+` and `join` escape every value that is not `Html` itself.

    Example:
        >>> Html("<td>{}</td>").format("<b> & 'x'")
        Html('<td>&lt;b&gt; &amp; &#x27;x&#x27;</td>')
    """

    @classmethod
    def escape(cls, s: Any, /) -> Html:
        """`s` escaped as `html.escape` does, or unchanged when it is markup already."""
        if hasattr(s, "__html__"):
            return cls(s.__html__())
        return cls(html.escape(str(s)))


def join(parts: Any) -> Html:
    """Markup pieces (or text, escaped) side by side."""
    return Html().join(parts)


def number(value: Any, digits: int = 4) -> Html:
    """A number as `display.number` writes it (a dash when absent), or any other value as
    text."""
    if value is None or isinstance(value, float):
        return Html.escape(display.number(value, digits))
    return Html.escape(value)


def breakable(name: str) -> Html:
    """`name` escaped, with a line-break opportunity after each `_`, `.` and `/`: a column
    headed `balanced_accuracy` (or a folder's path) may wrap instead of widening the table
    past the page."""
    return Html(re.sub(r"([_./])", r"\1<wbr>", html.escape(name)))


def interval_cell(entry: Interval | dict[str, float] | None) -> Html:
    """A table cell with a value and its interval, sortable by the value (a dash when
    absent)."""
    if isinstance(entry, dict):
        entry = Interval.model_validate(entry) if entry else None
    if entry is None or entry.value is None:
        return Html("<td>–</td>")
    text = Html("{}").format(display.number(entry.value))
    around = display.bounds(entry)
    if around is not None:
        text += Html(' <span class="muted">{}</span>').format(around)
    return Html('<td data-v="{}">{}</td>').format(entry.value, text)


# Inside <script>, `</script>` (any case) or `<!--` in a string would end or bend the
# script: JSON written there escapes <, > and & (and the two line separators JavaScript
# does not allow in strings before ES2019) as \u escapes, which JSON reads back unchanged.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                   "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside an HTML <script> element.

    Example:
        >>> script_json(["</script><b>"])
        '["\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"]'
    """
    text = json.dumps(value)
    for character, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(character, escape)
    return text
