"""The page framework: `Page` collects the sections' markup and figures and renders one
self-contained HTML file.

The stylesheet and scripts are files beside this module (`assets/`), read once. plotly.js
(4.8 MB) travels gzipped and base64-encoded (2 MB) and is unpacked by the browser's own
DecompressionStream: the page stays one offline file at under half the size.
"""

from __future__ import annotations

import base64
import functools
import gzip
from collections.abc import Callable
from importlib import resources
from typing import Any

from visionbench import display
from visionbench.report.markup import Html, script_json
from visionbench.runtime.progress import ignore


@functools.cache
def asset(name: str) -> str:
    """The text of `assets/<name>` (the stylesheet, a script), read once."""
    return resources.files("visionbench.report").joinpath("assets", name).read_text(
        encoding="utf-8")


@functools.lru_cache(maxsize=1)
def packed_plotly() -> str:
    """plotly.js gzipped (no timestamp, so the same bytes every time) and base64-encoded."""
    from plotly.offline import get_plotlyjs

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


class Page:
    """Collects sections and figures; renders the HTML. Everything added is `Html`, so
    every value in it was escaped on its way in."""

    def __init__(self, step: Callable[[str], None] = ignore) -> None:
        self.parts: list[Html] = []
        self.figures: list[tuple[str, dict[str, Any]]] = []
        self.nav: list[tuple[str, str]] = []
        # Told of each part of the page as it is drawn (progress on long reports).
        self.step = step

    def section(self, anchor: str, title: str) -> None:
        """Start a section: its heading, and its link in the navigation bar."""
        self.nav.append((anchor, title))
        self.parts.append(Html('<h2 id="{}">{}</h2>').format(anchor, title))

    def add(self, markup: Html) -> None:
        """Append markup; plain text is refused, since nothing would have escaped it."""
        if not isinstance(markup, Html):
            raise TypeError(f"Page.add takes Html, not {type(markup).__name__}: build the "
                            "markup with Html(...).format(...) so that its values are escaped")
        self.parts.append(markup)

    def plot(self, figure: dict[str, Any]) -> Html:
        """A placeholder for `figure`, drawn by plotly when the page opens."""
        plot_id = f"plot{len(self.figures)}"
        # Names from the data reach plotly, which renders part of HTML: made literal here.
        self.figures.append((plot_id, display.plotly_safe(figure)))
        return Html('<div class="plot" id="{}"></div>').format(plot_id)

    def render(self, title: str, subtitle: str) -> str:
        """The whole page: head, navigation, sections, plotly.js and the charts' calls."""
        calls = "\n".join(
            f"Plotly.newPlot({script_json(pid)}, {script_json(fig['data'])}, "
            f"{script_json(fig['layout'])}, {{responsive: true, displayModeBar: false}});"
            for pid, fig in self.figures
        )
        nav = Html().join(Html('<a href="#{}">{}</a>').format(anchor, text)
                          for anchor, text in self.nav)
        head = Html('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                    '<meta name="viewport" content="width=device-width"><title>{title}'
                    "</title><style>\n{style}</style></head><body>"
                    "<header><h1>{title}</h1><div>{subtitle}</div></header>"
                    "<nav>{nav}</nav><main>{main}</main>").format(
            title=title, style=Html(asset("report.css")), subtitle=subtitle, nav=nav,
            main=Html().join(self.parts))
        # The scripts are JSON made safe for <script> (`script_json`) and the project's own
        # files: not HTML, so not escaped as HTML.
        return (f'{head}<script id="plotly-gzip" type="application/octet-stream">'
                f"{packed_plotly()}</script>"
                f"<script>function drawCharts() {{\n{calls}\n}}\n\n{asset('load_plotly.js')}\n"
                f"\n{asset('sort.js')}</script></body></html>\n")

