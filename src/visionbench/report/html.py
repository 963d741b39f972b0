"""`report.html`: one self-contained page per run, built from the run folder alone.

Everything is inlined (plotly.js once, gzipped and unpacked by the browser; pictures in the
smaller of a palette PNG and a JPEG), so the file works offline and can be mailed; the
same folder always gives the same bytes, so `visionbench report` rebuilds it identically.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from visionbench import display
from visionbench.data.describe import (
    TESTED_BY_ENSEMBLE,
    TESTED_BY_REFIT,
    describe_class_separation,
    describe_duplicate_search,
    describe_limit,
    describe_splits,
)
from visionbench.data.duplicates import place_label
from visionbench.data.quality import QUALITY_ISSUES, quality_chart
from visionbench.errors import UserError
from visionbench.evaluate.explain import unfaithful_methods
from visionbench.evaluate.leaderboard import recommendation_sentence
from visionbench.evaluate.metrics import METRICS
from visionbench.evaluate.robustness import SEVERITY
from visionbench.evaluate.shift import verdict
from visionbench.rasters import open_raster
from visionbench.registry import Registry
from visionbench.report import charts
from visionbench.rundir.documents import (
    ClinicalReading,
    Comparison,
    ConformalSummary,
    DataRecord,
    EvaluationDocument,
    Explanations,
    GenericUnfamiliar,
    History,
    Inspection,
    Interval,
    LabelIssues,
    LabelIssuesOfTest,
    Leaderboard,
    LeaderboardRow,
    ModelCard,
    ModelMetrics,
    Robustness,
    SegmentRow,
    Segments,
    ShiftDocument,
    Status,
    Sweep,
    TemperatureScaling,
    Unfamiliar,
    notices_with,
)
from visionbench.rundir.layout import (
    ModelFolder,
    RunFolder,
    duplicate_pairs_chart,
    label_issues_chart,
    sample_chart,
)
from visionbench.runtime.progress import Steps, ignore
from visionbench.schemas.inputs import InputSpec

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
nav{position:sticky;top:0;background:#f1f3f5;padding:8px 28px;font-size:14px;z-index:5}
nav a{margin-right:14px;color:#1d3557}main{padding:8px 28px;max-width:1250px}
h2{border-bottom:2px solid #1d3557;padding-bottom:4px;margin-top:34px}
h3{margin-top:26px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f1f3f5;cursor:pointer}
td:first-child,th:first-child{text-align:left}
td span.muted{white-space:nowrap}.warn{background:#fff3cd;border-left:4px solid
#e0a800;padding:6px 10px;margin:6px 0}.ok{background:#e8f5e9;border-left:4px solid #2e7d32;
padding:8px 12px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));
gap:10px}.plot{min-height:340px}img{max-width:100%}.muted{color:#666;font-size:13px}
tr.reference td{font-style:italic;color:#555}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px}
.scroll{overflow-x:auto}.samples img{max-width:560px;display:block;margin:2px 0}
.samples figure{margin:8px 0}.samples figcaption{font-size:13px;font-weight:600}
@media print{nav{display:none}.plot{break-inside:avoid}}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.from(body.rows), up = th.dataset.up !== '1';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? c : -c;
    });
    th.dataset.up = up ? '1' : '0';
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def _image(path: Path, alt: str) -> str:
    """The picture inlined in the smaller of two encodings: PNG with a 256-colour palette
    (charts, grids and heat maps: flat colours) or JPEG at quality 80 (photo-like pictures).
    Both are deterministic, so the same folder gives the same bytes. The palette comes from
    the fast octree: median cut took half the report's time on the quickstart's pictures
    and gave larger files."""
    if not path.is_file():
        return ""
    try:
        with open_raster(path, formats=("PNG", "JPEG")) as picture:
            rgb = picture.convert("RGB")
        palette = io.BytesIO()
        rgb.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            palette, "PNG", optimize=True)
        photo = io.BytesIO()
        rgb.save(photo, "JPEG", quality=80, optimize=True)
    except (OSError, ValueError, UserError) as exc:
        # A run folder from someone else may hold a damaged or hostile picture.
        return (f'<div class="warn">{html.escape(path.name)} could not be shown: '
                f"{html.escape(type(exc).__name__)}</div>")
    kind, found = min((("png", palette.getvalue()), ("jpeg", photo.getvalue())),
                      key=lambda pair: len(pair[1]))
    encoded = base64.b64encode(found).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{encoded}">'


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


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, float):
        return display.number(value, digits)
    return html.escape(str(value))


def _breakable(name: str) -> str:
    """`name` escaped, with a line-break opportunity after each `_`, `.` and `/`: a column
    headed `balanced_accuracy` (or a folder's path) may wrap instead of widening the table
    past the page."""
    return re.sub(r"([_./])", r"\1<wbr>", html.escape(name))


def _interval(entry: Interval | dict[str, float] | None) -> str:
    if isinstance(entry, dict):
        entry = Interval.model_validate(entry) if entry else None
    if entry is None or entry.value is None:
        return "<td>–</td>"
    text = display.number(entry.value)
    around = display.bounds(entry)
    if around is not None:
        text += f' <span class="muted">{around}</span>'
    return f'<td data-v="{entry.value}">{text}</td>'


class Page:
    """Collects sections and figures; renders the HTML."""

    def __init__(self, step: Callable[[str], None] = ignore) -> None:
        self.parts: list[str] = []
        self.figures: list[tuple[str, dict[str, Any]]] = []
        self.nav: list[tuple[str, str]] = []
        # Told of each part of the page as it is drawn (progress on long reports).
        self.step = step

    def section(self, anchor: str, title: str) -> None:
        self.nav.append((anchor, title))
        self.parts.append(f'<h2 id="{html.escape(anchor)}">{html.escape(title)}</h2>')

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def plot(self, figure: dict[str, Any]) -> str:
        plot_id = f"plot{len(self.figures)}"
        # Names from the data reach plotly, which renders part of HTML: made literal here.
        self.figures.append((plot_id, display.plotly_safe(figure)))
        return f'<div class="plot" id="{plot_id}"></div>'

    def render(self, title: str, subtitle: str) -> str:
        calls = "\n".join(
            f"Plotly.newPlot({script_json(pid)}, {script_json(fig['data'])}, "
            f"{script_json(fig['layout'])}, {{responsive: true, displayModeBar: false}});"
            for pid, fig in self.figures
        )
        nav = "".join(f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for a, t in self.nav)
        return (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><div>{html.escape(subtitle)}</div></header>"
            f"<nav>{nav}</nav><main>{''.join(self.parts)}</main>"
            '<script id="plotly-gzip" type="application/octet-stream">'
            f"{packed_plotly()}</script>"
            f"<script>function drawCharts() {{\n{calls}\n}}\n{LOAD_PLOTLY}\n{SORT_SCRIPT}"
            "</script></body></html>\n"
        )


# plotly.js (4.8 MB) travels gzipped and base64-encoded (2 MB) and is unpacked by the
# browser's own DecompressionStream: the page stays one offline file at under half the size.
LOAD_PLOTLY = """
(function () {
  if (!('DecompressionStream' in window)) {
    document.querySelectorAll('.plot').forEach(function (plot) {
      plot.textContent = 'This browser cannot unpack the charts (it lacks DecompressionStream); '
        + 'open the report in a recent Chrome, Edge, Firefox or Safari.';
    });
    return;
  }
  var text = atob(document.getElementById('plotly-gzip').textContent);
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
  var unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(unpacked).text().then(function (code) {
    var script = document.createElement('script');
    script.textContent = code;
    document.head.appendChild(script);
    drawCharts();
    document.body.dataset.charts = 'drawn';
  });
})();
"""


@functools.lru_cache(maxsize=1)
def packed_plotly() -> str:
    """plotly.js gzipped (no timestamp, so the same bytes every time) and base64-encoded."""
    from plotly.offline import get_plotlyjs

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


@dataclass
class Run:
    """The typed documents of a run folder that the report is drawn from."""

    folder: RunFolder
    data: DataRecord
    board: Leaderboard
    comparison: Comparison
    inspection: Inspection | None
    evaluations: dict[str, EvaluationDocument]
    colour: dict[str, str]

    @classmethod
    def read(cls, folder: RunFolder) -> Run:
        """Every document the report needs; a finished run folder has them all."""
        board = folder.require(Leaderboard)
        models = [row.model for row in board.rows]
        evaluations = {m: e for m in models
                       if (e := folder.model(m).read(EvaluationDocument)) is not None}
        comparison = folder.read(Comparison) or Comparison(
            primary_metric="", recommended=None, alpha=0.05, marks={}, pairs=[])
        return cls(folder, folder.require(DataRecord), board, comparison,
                   folder.read(Inspection), evaluations, charts.colours(models))

    def row(self, name: str) -> LeaderboardRow:
        """The leaderboard row of model `name`."""
        return next(r for r in self.board.rows if r.model == name)


Section = Callable[[Page, Run], None]
# The report's sections, in page order; a new section is one registered function.
SECTIONS: Registry[Section] = Registry("report section")


def _warnings(run: Run) -> list[str]:
    """The banners of the summary, most consequential first: leaks into test, leaks into
    validation, a limited dataset, then the rest of the data's and the models' warnings."""
    limited = describe_limit(run.data)
    found = duplicate_banners(run.data) + ([limited] if limited else [])
    found += [warning.message for warning in run.data.warnings
              if warning.code != "test_duplicates"]
    for row in run.board.rows:
        if row.status is not Status.OK:
            found.append(f"model {row.model} {row.status.value}: {row.error}")
    for name, evaluation in run.evaluations.items():
        for note in notices_with(evaluation.notes, "one_class_only"):
            found.append(f"{name}: {note.message}")
    return found


def duplicate_banners(data: DataRecord) -> list[str]:
    """At most two sentences on duplicates across splits: test images that duplicate
    training or validation ones (their scores measure memory), then validation images that
    duplicate training ones (they inflate validation scores, which choose the model, stop
    training early and set thresholds)."""
    found = data.duplicates
    across = {kind: found.at(kind, "across") if found else {} for kind in ("exact", "near")}

    def tally(places: tuple[str, ...]) -> tuple[int, dict[str, int], int]:
        images, pairs, conflicts = 0, {}, 0
        for kind, counts in across.items():
            for where, finding in counts.items():
                if where in places:
                    images += finding.images
                    pairs[kind] = pairs.get(kind, 0) + finding.pairs
                    conflicts += finding.label_conflicts
        return images, pairs, conflicts

    def detail(pairs: dict[str, int], conflicts: int) -> str:
        text = ", ".join(f"{count:,} {kind} pair(s)" for kind, count in pairs.items() if count)
        return text + (f", {conflicts:,} of them with different labels" if conflicts else "")

    banners = []
    counted, pairs, conflicts = tally(("train~test", "val~test"))
    leaked = notices_with(data.warnings, "test_duplicates")
    if counted or leaked:
        images = leaked[0].data.get("images", counted) if leaked else counted
        dropped = bool(found and found.dropped_from_test)
        banners.append(
            f"{images:,} test image(s) duplicate training or validation images "
            f"({detail(pairs, conflicts)}): "
            + ("they were dropped from the test split." if dropped else
               "test scores on them measure memory, not generalisation; the summary gives the "
               "recommended model's score without them."))
    counted, pairs, conflicts = tally(("train~val",))
    if counted:
        banners.append(
            f"{counted:,} validation image(s) duplicate training images "
            f"({detail(pairs, conflicts)}): they inflate validation scores, and validation "
            "chooses the recommended model, stops training early and sets thresholds, so "
            "those choices lean toward models that memorise.")
    return banners


@SECTIONS.register("01-summary")
def _summary(page: Page, run: Run) -> None:
    page.section("summary", "Summary")
    chosen = run.comparison.recommended
    primary = run.board.primary_metric
    if chosen:
        page.add(f'<p class="ok">{_recommendation(run, chosen, primary)}</p>')
        shifted = _shift_banner(run)
        if shifted:
            page.add(f'<div class="warn">{html.escape(shifted)}</div>')
    else:
        page.add(f'<div class="warn">{html.escape(recommendation_sentence(run.board))}</div>')
    for warning in _warnings(run):
        page.add(f'<div class="warn">{html.escape(warning)}</div>')


def _recommendation(run: Run, chosen: str, primary: str) -> str:
    """The recommended model, why it was chosen on validation, and its test score once."""
    selection = run.comparison.selection
    entry = run.row(chosen).metrics[primary]
    level = display.level(run.board.confidence)
    text = f"<b>Recommended: {html.escape(chosen)}</b>"
    if selection.reason:
        text += f" — {html.escape(selection.reason)}"
    validation = selection.values.get(chosen)
    if validation is not None:
        text += f" (validation {primary} {display.number(validation)})"
    text += f". Its test {primary}: {display.number(entry.value)}"
    bounds = display.bounds(entry)
    if bounds is not None:
        text += f" ({level} interval {bounds})"
    text += "."
    test_best = run.comparison.test_best
    if test_best and test_best != chosen:
        best_entry = run.row(test_best).metrics[primary]
        text += (f"<br>Best on test: {html.escape(test_best)} ({primary} "
                 f"{display.number(best_entry.value)}); the highest of several noisy test "
                 "scores is optimistic, and choosing by it would let the test split decide. "
                 f"Against {html.escape(chosen)} on test: "
                 f"{html.escape(run.comparison.marks.get(test_best, 'untested'))}.")
    tied = [m for m in selection.tied if m != chosen]
    if tied:
        text += (f"<br>Not told apart from the best on validation (paired bootstrap, alpha "
                 f"{run.comparison.alpha}): {display.names(map(html.escape, tied))}.")
    for name, reference in run.comparison.references.items():
        test = reference.models.get(chosen, {}).get("accuracy")
        if test is not None:
            text += (f"<br>Against {html.escape(name)} (accuracy "
                     f"{display.number(reference.metrics['accuracy'])}"
                     + (f", {html.escape(reference.source)}" if reference.source else "")
                     + f"): {html.escape(test.verdict)} (one-sided exact binomial p = "
                     f"{display.p_value(test.p_greater)} that it is better).")
    evaluation = run.evaluations.get(chosen)
    clinical = evaluation.clinical if evaluation else None
    if clinical:
        argmax = clinical.argmax
        text += (f"<br>{html.escape(_positive_name(clinical))} at argmax: sensitivity "
                 f"{display.interval(argmax.sensitivity, 3)}, specificity "
                 f"{display.interval(argmax.specificity, 3)}; "
                 f"<b>{int(argmax.missed_positives.value)} positive test images "
                 "predicted negative</b>.")
    clean = run.row(chosen).clean_test
    if clean:
        text += (f"<br>On the {clean.images} test images that do not duplicate a "
                 f"training image: {primary} {display.number(clean.value)}"
                 + (f" ({display.bounds(clean)})" if clean.low is not None else "") + ".")
    return text


def _positive_name(clinical: ClinicalReading) -> str:
    """'Positive reading (pneumonia)' or the group's name with its classes, each once."""
    classes = clinical.positive_classes
    group = clinical.group
    if group and [group] != classes:
        return f"Reading '{group}' ({', '.join(classes)})"
    return f"Positive class {', '.join(classes)}"


@SECTIONS.register("02-leaderboard")
def _leaderboard(page: Page, run: Run) -> None:
    board, colour = run.board, run.colour
    primary = board.primary_metric
    page.section("leaderboard", "Leaderboard")
    shown = board.shown
    head = "".join(f"<th>{_breakable(m)}</th>" for m in shown)
    body = []
    for row in board.rows:
        cells = "".join(_interval(row.metrics.get(m)) for m in shown)
        swatch = f'<span class="swatch" style="background:{colour[row.model]}"></span>'
        label = html.escape(row.model) + ("" if row.model != board.test_best else
                                          ' <span class="muted">(best on test)</span>')
        body.append(
            f"<tr><td>{swatch}{label}</td><td>{row.status.value}</td>{cells}"
            f"<td>{_fmt(row.validation)}</td>"
            f"<td>{_fmt(row.missed_positives, 0)}</td>"
            f"<td data-v=\"{row.parameters or 0}\">{_fmt(row.parameters)}</td>"
            f"<td>{_fmt(row.train_seconds, 1)}</td>"
            f"<td>{html.escape(row.mark or row.error)}</td></tr>")
    for name, reference in board.references.items():
        cells = "".join(f"<td>{_fmt(reference.metrics.get(m))}</td>" for m in shown)
        body.append(f"<tr class=\"reference\"><td>{html.escape(name)}</td><td>reference</td>"
                    f"{cells}<td>–</td><td>–</td><td>–</td><td>–</td>"
                    f"<td>{html.escape(reference.source)}</td></tr>")
    page.add(f'<p class="muted">Click a column to sort. Ranked by test {primary}, a '
             "description: the recommendation is made on validation "
             f"({html.escape(recommendation_sentence(board))}) Brackets are "
             f"{display.level(board.confidence)} stratified bootstrap intervals on the test "
             "split; the last column is the paired test on test against the recommended "
             "model.</p>"
             f'<div class="scroll"><table class="sortable"><thead><tr><th>model</th>'
             f"<th>status</th>{head}<th>validation {_breakable(primary)}</th>"
             "<th>missed +</th><th>parameters</th><th>train s</th>"
             f"<th>vs recommended</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
             "<p class=\"muted\">All metrics of every model, with intervals, are in "
             "leaderboard.csv and each model's evaluation.json.</p>"
             + _references(run))
    bars = [m for m in shown if METRICS.get(m).share]
    rows = board.rows
    if not any(row.status == Status.OK for row in board.rows):
        return  # every model failed: the sentence above says why; no chart has a bar
    page.add('<div class="grid">'
             + page.plot(charts.metric_bars(rows, bars, colour, board.confidence))
             + page.plot(charts.accuracy_vs_time(rows, primary, colour,
                                                 METRICS.get(primary).bounds))
             + (page.plot(charts.significance_matrix(run.comparison, list(run.evaluations)))
                if len(run.evaluations) > 1 else "") + "</div>")
    _tta(page, run)
    _folds(page, run)
    _sweep(page, run)


def _tta(page: Page, run: Run) -> None:
    """Test-time augmentation, part of the leaderboard section: each `<model>+tta` row
    against its plain model on the same test images (nothing without such rows)."""
    gains = run.comparison.tta
    if not gains:
        return
    body = []
    for gain in gains:
        difference = ("–" if gain.difference is None else
                      f"{gain.difference:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}]")
        p_value = gain.p_value
        body.append(f"<tr><td>{html.escape(gain.model)}</td>"
                    f"<td>{html.escape(gain.against)}</td>"
                    f"<td>{html.escape(', '.join(gain.views))}</td>"
                    f"<td>{html.escape(difference)}</td>"
                    f"<td>{'–' if p_value is None else display.p_value(p_value)}</td>"
                    f"<td>{display.p_value(gain.mcnemar_p)}</td></tr>")
    metric = html.escape(gains[0].metric)
    page.add('<h3 id="tta">Test-time augmentation</h3>'
             '<p class="muted">Each model\'s probabilities averaged over views of every '
             "image, against the plain model on the same test images: the "
             f"paired difference in {metric} with its "
             f"{display.level(run.board.confidence)} paired bootstrap interval and p-value, "
             "and McNemar's test on the images each gets right. Whether it is used is decided "
             "like any choice, on validation (the recommendation).</p>"
             "<table><thead><tr><th>with TTA</th><th>plain</th><th>views</th>"
             f"<th>{metric} difference "
             "[CI]</th><th>p (bootstrap)</th><th>p (McNemar)</th></tr></thead>"
             f"<tbody>{''.join(body)}</tbody></table>")


def _sweep(page: Page, run: Run) -> None:
    """The sweep, part of the leaderboard section: how many trials, the best one (now a
    model of the run), the search's progress, the settings' importance and every trial's
    settings against its score (nothing without a sweep)."""
    found = run.folder.read(Sweep)
    if found is None:
        return
    states = Counter(t.state for t in found.trials)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    best = ", ".join(f"{html.escape(k)} {html.escape(_setting_text(v))}"
                     for k, v in found.best.params.items())
    page.add('<h3 id="sweep">Sweep</h3>'
             f'<p class="muted">{len(found.trials)} trials searched the settings of '
             f"{html.escape(found.model)} ({html.escape(counts)}; pruner "
             f"{html.escape(found.pruner)}), each trained on the training split and scored by "
             f"{html.escape(found.metric)} on the validation split; the trials were not given "
             f"the test split. The best, trial {found.best.number + 1} "
             f"({html.escape(_fmt(found.best.value))}: {best}), became model "
             f"{html.escape(found.tuned)}, trained again and evaluated on test once. Its "
             f"validation score is the best of {len(found.trials)} tries, so it is "
             "optimistic; its test score is not.</p>"
             '<div class="grid">' + page.plot(charts.sweep_progress(found.trials, found.metric))
             + (page.plot(charts.sweep_importance(found.importance)) if found.importance
                else "")
             + page.plot(charts.sweep_settings(found.trials, found.metric, found.scales))
             + "</div>")


def _setting_text(value: Any) -> str:
    """A searched setting's value as the sweep's sentence writes it."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _references(run: Run) -> str:
    """Every model against each reference: the verdict per metric, and for accuracy the
    one-sided exact binomial p-values."""
    found = run.comparison.references
    if not found:
        return ""
    parts = []
    for name, reference in found.items():
        metrics = list(reference.metrics)
        head = "".join(f"<th>{_breakable(m)} {display.number(reference.metrics[m])}</th>"
                       for m in metrics)
        rows = []
        for model, tests in reference.models.items():
            cells = []
            for metric in metrics:
                test = tests.get(metric)
                if test is None:
                    cells.append("<td>–</td>")
                    continue
                text = test.verdict
                if test.p_greater is not None:
                    text += (f" (p better {display.p_value(test.p_greater)}, p worse "
                             f"{display.p_value(test.p_less)})")
                cells.append(f"<td>{html.escape(text)}</td>")
            rows.append(f"<tr><td>{html.escape(model)}</td>{''.join(cells)}</tr>")
        source = f" ({html.escape(reference.source)})" if reference.source else ""
        parts.append(f"<h3>Against {html.escape(name)}{source}</h3><table><thead><tr>"
                     f"<th>model</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return ('<p class="muted">Only a reference\'s numbers are known, not its predictions: '
            "accuracy is tested with a one-sided exact binomial test on this test split's "
            "size; for the other metrics the reference is placed against the model's "
            "bootstrap interval.</p>" + "".join(parts))


def _folds(page: Page, run: Run) -> None:
    """Cross-validation, part of the leaderboard section: each model's primary metric fold
    by fold, its mean with the corrected interval, and the corrected resampled t-test
    against the recommended one (nothing without folds)."""
    board = run.board
    rows = [row for row in board.rows if row.folds]
    if not rows:
        return
    primary = board.primary_metric
    tests = {found.model: found for found in run.comparison.folds}
    body, below = [], []
    for row in rows:
        folds = row.folds
        assert folds is not None  # the rows shown are those with folds
        values = [v for v in folds.values if v is not None]
        tested_value = (row.metrics.get(primary).value if row.metrics.get(primary) else None)
        higher = METRICS.get(primary).higher_is_better
        if values and tested_value is not None and (
                tested_value < min(values) if higher else tested_value > max(values)):
            below.append(f"{row.model} ({_fmt(tested_value)} on test; folds "
                         f"{_fmt(min(values))}–{_fmt(max(values))})")
        tested = tests.get(row.model)
        versus = ("recommended" if row.model == board.recommended else
                  f"{tested.difference:+.4f}, p {display.p_value(tested.p_value)}"
                  if tested else "–")
        body.append(f"<tr><td>{html.escape(row.model)}</td>"
                    f"<td>{html.escape(display.interval(folds.interval))}</td>"
                    f"<td>{', '.join(_fmt(v) for v in folds.values)}</td>"
                    f"<td>{html.escape(versus)}</td></tr>")
    first = rows[0].folds
    repeats = first.repeats if first else 1
    count = (first.count if first else 0) // max(repeats, 1)
    again = (f", repeated {repeats} times with the folds cut anew and another seed"
             if repeats > 1 else "")
    page.add('<h3 id="folds">Cross-validation</h3>'
             f'<p class="muted">{count}-fold cross-validation{again}: each model was trained '
             f"once per fold with that fold as validation; {html.escape(primary)} on each "
             "fold's "
             "validation images, their mean with a "
             f"{display.level(board.confidence)} t interval whose variance is corrected for "
             "the folds' overlapping training sets, and the corrected resampled t-test "
             "(Nadeau &amp; Bengio) of each model against the recommended one, fold by fold. "
             "The recommendation is made on the out-of-fold predictions (every training "
             "image once); the test split is predicted by "
             + html.escape(TESTED_BY_ENSEMBLE if run.data.split_policy
                           and run.data.split_policy.test_with == "fold_ensemble"
                           else TESTED_BY_REFIT)
             + ", and the leaderboard above scores that. Two validation numbers differ on "
             "purpose: the leaderboard's validation column is "
             f"{html.escape(primary)} on all out-of-fold predictions pooled (every training "
             "image once), the mean below averages each fold's own value.</p>"
             + (f'<div class="warn">{html.escape(", ".join(below))}: the test score is '
                f"below every fold's validation {html.escape(primary)}. The test images may "
                "differ from the training images, or the model that predicts test (refit "
                "or ensemble) behaves unlike the fold models: read the test score as the "
                "one that counts for new images.</div>" if below else "")
             + f"<table><thead><tr><th>model</th><th>{html.escape(primary)} mean [CI]</th>"
             "<th>per fold</th><th>vs recommended (difference, p)</th></tr></thead>"
             f"<tbody>{''.join(body)}</tbody></table>"
             + page.plot(charts.fold_spread(rows, primary,
                                            run.colour)))


@SECTIONS.register("03-data")
def _data(page: Page, run: Run) -> None:
    page.section("data", "Data")
    page.add(_data_section(run))


@SECTIONS.register("03-label-issues")
def _label_issues(page: Page, run: Run) -> None:
    """Suspected label errors (with `evaluate.label_issues`, or after `visionbench inspect
    RUN_DIR`): of the training images, and of the test split when it was asked for."""
    found = [(kind, split, document) for kind, split in ((LabelIssues, "val"),
                                                         (LabelIssuesOfTest, "test"))
             if (document := run.folder.read(kind)) is not None]
    if not found:
        return
    page.section("label-issues", "Label issues")
    for _, split, document in found:
        if split == "test":
            page.add("<h3>Test split</h3><p class=\"muted\">A diagnosis of the test labels "
                     "(asked for with <code>visionbench inspect RUN_DIR --split test</code>); "
                     "nothing in the run is chosen on it.</p>")
        _label_issue_list(page, run, document, split)


def _label_issue_list(page: Page, run: Run, found: LabelIssues, split: str) -> None:
    pairs = "".join(f"<tr><td>{html.escape(p.given)}</td><td>{html.escape(p.suggested)}"
                    f"</td><td>{p.count}</td></tr>" for p in found.pairs)
    classes = ", ".join(f"{html.escape(name)} {row.issues} of {row.images}"
                        for name, row in found.by_class.items())
    shown = found.issues[:found.shown]
    rows = "".join(
        f"<tr><td>{html.escape(row.id)}</td><td>{html.escape(row.given)}</td>"
        f"<td>{_fmt(row.given_probability, 3)}</td><td>{html.escape(row.suggested)}</td>"
        f"<td>{_fmt(row.suggested_probability, 3)}</td></tr>" for row in shown)
    page.add(f"<p><b>{found.found}</b> of the {found.images_scored} images scored out of "
             f"sample ({html.escape(found.source)} predictions of "
             f"{html.escape(found.model)}) have a given label the model disputes, by "
             f"confident learning ({html.escape(found.method)}). Per given class: {classes}. "
             "They are candidates for a second look, not verdicts: a model's blind spot "
             "looks the same.</p>"
             + (f"<table><thead><tr><th>given</th><th>model says</th><th>images</th></tr>"
                f"</thead><tbody>{pairs}</tbody></table>" if pairs else "")
             + _image(label_issues_chart(run.folder.data_dir, split), "suspected label errors")
             + (f"<h3>The {len(shown)} most severe</h3><table class=\"sortable\"><thead><tr>"
                "<th>image</th><th>given</th><th>p(given)</th><th>model says</th>"
                f"<th>p</th></tr></thead><tbody>{rows}</tbody></table>"
                "<p class=\"muted\">Every issue is in data/label_issues.json.</p>"
                if shown else ""))


def _shift_banner(run: Run) -> str | None:
    """The sentence beside the headline when the test images have shifted from the
    training images (None when they have not, or were not tested)."""
    document = run.folder.read(ShiftDocument)
    test = document.splits.get("test") if document is not None else None
    if test is None or not test.shifted:
        return None
    return (verdict(test, "The test images") + ": scores on validation, which chose the "
            "model, overstate what test and real use show; see 'Shift between splits'.")


@SECTIONS.register("03-shift")
def _shift(page: Page, run: Run) -> None:
    """Whether validation and test images come from the training images' distribution,
    and which image properties moved (nothing when the run did not test)."""
    document = run.folder.read(ShiftDocument)
    if document is None or not document.splits:
        return
    page.section("shift", "Shift between splits")
    rows = "".join(
        f"<tr><td>{split}</td><td>{found.images:,} vs {found.reference_images:,}</td>"
        f"<td>{display.p_value(found.p_value, found.permutations + 1)}</td>"
        f"<td>{_fmt(found.auc, 3)}</td>"
        f"<td>{'shifted' if found.shifted else 'no shift found'}</td></tr>"
        for split, found in document.splits.items())
    page.add(
        '<p class="muted">Each split against a sample of training images (stratified by '
        f"class), on a generic embedding ({html.escape(document.embedding)}): a kernel "
        "two-sample test (maximum mean discrepancy, permutation p-value; shifted below "
        f"{document.alpha:g}) and, as its effect size, the cross-validated AUC of a "
        "classifier telling the split's images from training images (0.5: it cannot). A "
        "shifted test split means validation scores overstate what test and real use "
        "show. Beside it, simple image properties compared one by one "
        "(Kolmogorov-Smirnov distance, largest first; moved: significant after "
        f"Bonferroni's correction and at least {document.smallest_distance:g}).</p>"
        "<table><thead><tr><th>split</th><th>images vs training</th><th>p</th>"
        f"<th>classifier AUC</th><th>verdict</th></tr></thead><tbody>{rows}</tbody></table>")
    for split, found in document.splits.items():
        cells = "".join(
            f"<tr><td>{html.escape(row.name)}</td><td>{_fmt(row.distance, 3)}</td>"
            f"<td>{display.p_value(row.p_value)}</td><td>{_quartiles(row.reference)}</td>"
            f"<td>{_quartiles(row.other)}</td><td>{'moved' if row.moved else ''}</td></tr>"
            for row in found.properties)
        page.add(f"<h3>Image properties: {split} against training</h3><table><thead><tr>"
                 "<th>property</th><th>distance</th><th>p</th><th>training median "
                 f"[quartiles]</th><th>{split} median [quartiles]</th><th></th></tr></thead>"
                 f"<tbody>{cells}</tbody></table>")


def _quartiles(values: list[float]) -> str:
    low, middle, high = values
    return f"{middle:.3g} <span class=\"muted\">[{low:.3g}, {high:.3g}]</span>"


@SECTIONS.register("03-weak-segments")
def _weak_segments(page: Page, run: Run) -> None:
    """Where each model does worse: bins of image properties whose test accuracy is
    significantly below the rest (nothing when the run measured none)."""
    found = {row.model: document for row in run.board.rows
             if (document := run.folder.model(row.model).read(Segments)) is not None}
    if not found:
        return
    page.section("weak-segments", "Weak segments")
    first = next(iter(found.values()))
    tried = len(first.rows)
    page.add(
        '<p class="muted">Each image property is cut into '
        f"{first.bins} bins at the quartiles of training images (never test); a bin is weak "
        "when its test accuracy is significantly below the rest of the test split "
        f"(one-sided Fisher exact test, Holm-corrected over the {tried} bins tried per "
        f"model, alpha {first.alpha:g}). Intervals: exact for accuracy, bootstrap for "
        f"{html.escape(first.primary_metric)}. Every bin is in each model's "
        "segments.json.</p>")
    headline = first.primary_metric != "accuracy"
    rows = []
    for model, document in found.items():
        for row in document.rows:
            if row.weak:
                rows.append(
                    f"<tr><td>{html.escape(model)}</td><td>{html.escape(_bin_name(row))}</td>"
                    f"<td>{row.images:,}</td><td>{display.interval(row.accuracy, 3)}</td>"
                    f"<td>{display.interval(document.accuracy, 3)}</td>"
                    + (f"<td>{display.interval(row.primary, 3)}</td>" if headline else "")
                    + f"<td>{display.p_value(row.adjusted)}</td></tr>")
    if not rows:
        page.add("<p>No bin of any property is significantly weaker than the rest of the "
                 "test split, for any model.</p>")
        return
    page.add("<table><thead><tr><th>model</th><th>segment</th><th>test images</th>"
             "<th>accuracy there</th><th>accuracy on all test</th>"
             + (f"<th>{html.escape(first.primary_metric)} there</th>" if headline else "")
             + f"<th>adjusted p</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _bin_name(row: SegmentRow) -> str:
    """'brightness below 0.31', 'brightness 0.31 to 0.45', 'brightness 0.62 and above'."""
    if row.low is None and row.high is not None:
        return f"{row.property} below {row.high:.3g}"
    if row.high is None and row.low is not None:
        return f"{row.property} {row.low:.3g} and above"
    return f"{row.property} {row.low:.3g} to {row.high:.3g}"


@SECTIONS.register("03-quality")
def _quality(page: Page, run: Run) -> None:
    """Image-quality issues per split and class, with examples, and each model's accuracy
    on the test images that have each issue (nothing when the inspection found none)."""
    quality = run.inspection.quality if run.inspection else None
    found = {name: issue for name, issue in (quality.issues.items() if quality else [])
             if issue.images}
    if quality is None or not found:
        return
    page.section("quality", "Image quality")
    # An "issue" every image has is a property of the dataset: said once, not scored.
    everywhere = [issue.meaning for issue in found.values() if issue.images == quality.images]
    if everywhere:
        page.add(f"<p>Every image: {html.escape(', '.join(everywhere))}.</p>")
    found = {name: issue for name, issue in found.items() if issue.images < quality.images}
    if not found:
        return
    segments = {row.model: document for row in run.board.rows
                if (document := run.folder.model(row.model).read(Segments)) is not None}
    page.add(f'<p class="muted">Checked on all {quality.images:,} images: cleanvision\'s '
             "checks (too dark, too light, blurry, low information, odd source size or "
             "aspect ratio, stored as grey), given the decoded images and the files' own "
             "sizes and modes, and grey content stored as colour. An image may have several. "
             "Per model: accuracy on the test images with the issue, and whether it is "
             "significantly below the rest (Fisher exact, Holm-corrected).</p>")
    splits = [split for split in ("train", "val", "test")
              if any(split in issue.counts for issue in found.values())]
    heads = "".join(f"<th>{split}</th>" for split in splits)
    heads += "".join(f"<th>{html.escape(model)}: test accuracy</th>" for model in segments)
    rows = []
    for name, issue in found.items():
        cells = "".join(
            f"<td>{sum(issue.counts.get(split, {}).values()):,}</td>" for split in splits)
        for document in segments.values():
            row = next((r for r in document.quality if r.property == name), None)
            cells += ("<td>–</td>" if row is None else
                      f"<td>{display.interval(row.accuracy, 3)}"
                      f"{' <b>weak</b>' if row.weak else ''}</td>")
        by_class = "; ".join(
            f"{html.escape(split)}: " + ", ".join(f"{html.escape(label)} {count:,}"
                                                  for label, count in counts.items())
            for split, counts in issue.counts.items())
        rows.append(f"<tr><td>{html.escape(issue.meaning)}<br><span class=\"muted\">"
                    f"{by_class}</span></td><td>{issue.images:,}</td>{cells}</tr>")
    page.add(f"<table><thead><tr><th>issue</th><th>images</th>{heads}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    for name, issue in found.items():
        # The file is named by visionbench from a known issue, never by the document.
        if issue.picture and name in QUALITY_ISSUES:
            page.add(f"<h3>{html.escape(issue.meaning)}: examples</h3>"
                     + _image(quality_chart(run.folder.data_dir, name), issue.meaning))


@SECTIONS.register("03-unfamiliar")
def _unfamiliar(page: Page, run: Run) -> None:
    """Each model's unfamiliar-image detector: what it flags of validation and test at
    the threshold chosen on validation, and how well it tells foreign images from the
    test images (nothing when the run fitted none)."""
    found = {row.model: document for row in run.board.rows
             if (document := run.folder.model(row.model).read(Unfamiliar)) is not None}
    if not found:
        return
    generic = run.folder.read(GenericUnfamiliar)
    page.section("unfamiliar", "Unfamiliar images")
    sets = list(dict.fromkeys(name for document in found.values() for name in document.foreign))
    head = "".join(f"<th>{_breakable(name)}: AUROC [CI], FPR@95, flagged</th>" for name in sets)
    body = []
    for model, document in found.items():
        cells = []
        for name in sets:
            measured = document.foreign.get(name)
            cells.append("<td>–</td>" if measured is None else
                         f"<td>{_fmt(measured.auroc, 3)} <span class=\"muted\">"
                         f"[{_fmt(measured.auroc_low, 3)}, {_fmt(measured.auroc_high, 3)}]"
                         f"</span>, {_fmt(measured.fpr_at_95, 3)}, "
                         f"{measured.flagged:.0%}</td>")
        shares = "".join(f"<td>{document.flagged[split].share:.1%}</td>"
                         if split in document.flagged else "<td>–</td>"
                         for split in ("val", "test"))
        body.append(f"<tr><td>{html.escape(model)}</td><td>{html.escape(document.method)}"
                    f"{' + generic' if document.generic else ''}</td>{shares}"
                    f"{''.join(cells)}</tr>")
    keep = next(iter(found.values())).keep
    generated = any(name.startswith("generated:") for name in sets)
    page.add(
        f'<p class="muted">Each model scores how unlike its training images an image is: '
        f"its own penultimate features ({html.escape(next(iter(found.values())).method)})"
        + (f", combined with a generic embedding ({html.escape(generic.embedding)}, "
           f"{html.escape(generic.method)}) that sees what a narrow model's features ignore"
           if generic is not None else "")
        + f". The threshold is chosen on validation only, so that {keep:.0%} of validation "
        "images pass; predict, the app and <code>--sort-into</code> flag images above it. "
        "Foreign sets: AUROC (foreign against the test images) with its bootstrap interval, "
        "the false-positive rate on test images at 95 % of foreign images caught, and the "
        "share of foreign images flagged at the threshold.</p>"
        + ('<div class="warn">No foreign image set was named (evaluate.unfamiliar.foreign): '
           "the sets marked generated (noise, blank images, photo crops, digits) are a "
           "floor, not a measure on the images this model will meet.</div>"
           if generated else "")
        + f'<div class="scroll"><table><thead><tr><th>model</th><th>detector</th>'
        f"<th>validation flagged</th><th>test flagged</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>")
    borrowed = [f"{row.model} answers with {metrics.networks[0]}'s"
                for row in run.board.rows if row.model not in found
                and (metrics := run.folder.model(row.model).read(ModelMetrics)) is not None
                and not metrics.fold_ensemble and metrics.networks[0] in found]
    if borrowed:
        page.add(f'<p class="muted">{html.escape("; ".join(borrowed))} detector: an '
                 "ensemble or a test-time augmentation row flags images with its first "
                 "network's detector (they learnt from the same training images and were "
                 "set on the same validation images).</p>")


@SECTIONS.register("04-models")
def _models(page: Page, run: Run) -> None:
    for row in run.board.rows:
        page.step(f"model {row.model}")
        page.section(f"model-{row.model}", f"Model {row.model}")
        card = run.folder.model(row.model).read(ModelCard)
        if card is not None:
            page.add(_input_settings(card.input, run))
        metrics = run.folder.model(row.model).read(ModelMetrics)
        if metrics is not None and metrics.notes:
            page.add(f'<p class="muted">{html.escape("; ".join(metrics.notes))}.</p>')
        page.add(_model_section(page, run.folder.model(row.model), row,
                                run.evaluations.get(row.model), run.data.classes,
                                run.colour[row.model]))


# Beyond this factor an enlarged image is flagged: its extra pixels carry no information.
UPSAMPLING_FLAG = 2.0


def native_side(run: Run) -> int:
    """The smaller side of the images as the data gave them: the median source size (from
    the inspection) when known, never more than the decoded size."""
    decoded = min(run.data.image_shape)
    stats = run.inspection.image_stats if run.inspection else {}
    medians = [min(split.width.median, split.height.median) for split in stats.values()]
    return int(min(decoded, *medians)) if medians else decoded


def _input_settings(spec: InputSpec, run: Run) -> str:
    """What the model is fed, from its model card, and a flag when that enlarges the images
    more than UPSAMPLING_FLAG times."""
    height, width = spec.size
    norm = ("each image scaled to mean 0 and standard deviation 1" if spec.per_image else
            f"mean {display.names(f'{m:.3f}' for m in spec.mean)}, std "
            f"{display.names(f'{s:.3f}' for s in spec.std)}")
    text = (f'<p class="muted">Input: {height}×{width} px, {spec.channels} channel(s), '
            f"{html.escape(norm)}; evaluation images reach the size by "
            f"{'a centre crop' if spec.resize == 'center_crop' else 'stretching'}.</p>")
    native = native_side(run)
    factor = min(height, width) / native if native else 1.0
    if factor > UPSAMPLING_FLAG:
        text += (f'<div class="warn">This model sees {height}×{width} px made from images of '
                 f"about {native} px: upsampled {factor:.1f}×. The added pixels carry no "
                 f"information, and each image costs about {factor ** 2:.0f}× the compute of "
                 "its native size; a backbone pretrained on large images may still gain from "
                 "it, so compare with a model at the native size before paying for it.</div>")
    return text


def build_report(folder: RunFolder, progress: str = "quiet") -> str:
    """The report's HTML for the run in `folder`; `progress` as in `train.progress`."""
    run = Run.read(folder)
    sections = SECTIONS.items()
    # A step per section, and one per model inside the models' section.
    with Steps("report", len(sections) + len(run.board.rows), progress) as steps:
        page = Page(steps.step)
        for key, section in sections:
            steps.step(key.split("-", 1)[1])
            section(page, run)
    where = folder.path.resolve()  # `report .` names the folder as its full path does
    title = f"visionbench report — {where.parent.name} / {where.name}"
    subtitle = (f"{run.data.source}; {len(run.data.classes)} classes; "
                f"{len(run.board.rows)} models")
    return page.render(title, subtitle)


def _split_counts(data: DataRecord) -> dict[str, dict[str, int]]:
    """Images per split and class as the table shows them: with folds, train and val are
    one fold's cut only, so they are shown together as the cross-validated images."""
    if not data.folds:
        return data.splits
    pooled = {c: sum(data.splits.get(s, {}).get(c, 0) for s in ("train", "val"))
              for c in data.classes}
    return {f"cross-validated ({len(data.folds)} folds)": pooled,
            **{s: counts for s, counts in data.splits.items() if s not in ("train", "val")}}


def _duplicate_places(data: DataRecord, kind: Literal["exact", "near"]
                      ) -> dict[str, dict[str, int]]:
    """Duplicate counts by place as `place_label` names them; with folds the places of the
    cross-validated images are merged (counts summed)."""
    merged: dict[str, dict[str, int]] = {}
    for place in ("within", "across"):
        found = data.duplicates.at(kind, place) if data.duplicates else {}
        for where, counts in found.items():
            total = merged.setdefault(place_label(where, bool(data.folds)),
                                      {"pairs": 0, "images": 0, "label_conflicts": 0})
            total["pairs"] += counts.pairs
            total["images"] += counts.images
            total["label_conflicts"] += counts.label_conflicts
    return merged


def _data_section(run: Run) -> str:
    data = run.data
    counts = _split_counts(data)
    splits = list(counts)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in splits)
    body = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(f"<td>{counts[s].get(c, 0)}</td>" for s in splits) + "</tr>"
        for c in data.classes)
    totals = "".join(f"<td><b>{data.totals.get(s, sum(counts[s].values()))}</b></td>"
                     for s in splits)
    limited = describe_limit(data)
    parts = [f"<p>{html.escape(data.source)}; images {data.image_shape[0]}×"
             f"{data.image_shape[1]}, {data.channels} channel(s). "
             f"{html.escape(describe_splits(data))}</p>",
             f'<div class="warn">{html.escape(limited)}</div>' if limited else "",
             f"<table><thead><tr><th>class</th>{head}</tr></thead><tbody>{body}"
             f"<tr><td><b>total</b></td>{totals}</tr></tbody></table>"]
    rows = []
    for kind in ("exact", "near"):
        for where, found in _duplicate_places(data, kind).items():
            rows.append(f"<tr><td>{kind}</td><td>{html.escape(where)}</td>"
                        f"<td>{found['pairs']}</td><td>{found['images']}</td>"
                        f"<td>{found['label_conflicts']}</td></tr>")
    parts.append("<h3>Duplicates</h3>" + (
        "<table><thead><tr><th>kind</th><th>where</th><th>pairs</th><th>images</th>"
        f"<th>label conflicts</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows else "<p>No duplicate images found.</p>")
        + f'<p class="muted">{html.escape(describe_duplicate_search(data))}</p>'
        + _image(duplicate_pairs_chart(run.folder.data_dir), "example duplicate pairs"))
    parts.append(_skipped(data))
    variance = run.inspection.variance if run.inspection else None
    if variance:
        parts.append(f"<p>{html.escape(describe_class_separation(variance))}</p>")
    samples = [(name, _image(sample_chart(run.folder.data_dir, name), f"class {name}"))
               for name in run.data.classes]
    samples = [(name, picture) for name, picture in samples if picture]
    if samples:
        parts.append('<h3>Samples (training images as the models see them)</h3>'
                     '<div class="samples">' + "".join(
                         f"<figure><figcaption>{html.escape(name)}</figcaption>{picture}"
                         "</figure>" for name, picture in samples) + "</div>")
    return "".join(parts)


def _skipped(data: DataRecord) -> str:
    """Every file the run left out, with the reason."""
    rows = [(name, why) for name, why in data.failures.items()]
    ignored = data.ignored_files
    listed = [] if ignored is None else ignored.examples if ignored.files is None else ignored.files
    for entry in listed:
        name, _, why = entry.partition(" (")
        rows.append((name, why.rstrip(")") if why else "not an image file"))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(why)}</td></tr>"
                   for name, why in rows)
    return (f"<h3>Skipped files ({len(rows)})</h3><div class=\"scroll\"><table><thead><tr>"
            f"<th>file</th><th>why</th></tr></thead><tbody>{body}</tbody></table></div>")


def _model_section(page: Page, folder: ModelFolder, row: LeaderboardRow,
                   document: EvaluationDocument | None, classes: list[str], colour: str) -> str:
    metrics = folder.read(ModelMetrics)
    if row.status is not Status.OK or document is None or metrics is None:
        return f'<div class="warn">{html.escape(row.error or "not evaluated")}</div>'
    parts = []
    if metrics.description:
        parts.append(f"<p>{html.escape(metrics.description)}</p>")
    earlier = folder.earlier_states()
    if earlier:
        kept = ", ".join(f"after epoch {epochs} (in {html.escape(state.path.name)})"
                         for epochs, state in earlier)
        parts.append(f'<p class="muted">Evaluated after {metrics.epochs} epochs (training was '
                     f"continued); the evaluations made before are kept: {kept}.</p>")
    stages = metrics.stages
    if stages:
        parts.append("<p class=\"muted\">" + "; ".join(
            f"stage {html.escape(s.stage)}: {s.trainable:,} trainable, {s.frozen:,} "
            f"frozen ({html.escape(s.rule)})" for s in stages) + "</p>")
    plots = []
    history = folder.read(History)
    if history and history.epochs:
        plots += [page.plot(f) for f in charts.training_curves(history, colour)]
    plots.append(page.plot(charts.confusion(document, classes, False)))
    plots.append(page.plot(charts.confusion(document, classes, True)))
    if document.roc:
        # With two classes the curves of the two classes mirror each other: draw the
        # positive one (class 1, or the configured positive group's class).
        drawn = classes if len(classes) != 2 else (
            document.clinical.positive_classes if document.clinical else classes[1:])
        plots.append(page.plot(charts.curves(document, "roc", drawn)))
        plots.append(page.plot(charts.curves(document, "pr", drawn)))
    plots.append(page.plot(charts.reliability(document, colour)))
    found = folder.read(Robustness)
    if found and found.corruptions:
        plots.append(page.plot(charts.robustness(found, colour, SEVERITY)))
    parts.append('<div class="grid">' + "".join(plots) + "</div>")
    if found and found.corruptions and found.images and found.images < (found.test_images or 0):
        parts.append(f'<p class="muted">Robustness ran on a stratified sample of '
                     f"{found.images:,} of the {found.test_images:,} test images "
                     "(evaluate.robustness_images); each accuracy under corruption has the "
                     "exact 95 % binomial interval of that sample.</p>")
    stats = ("precision", "recall", "specificity", "f1", "support", "tp", "fp", "fn", "auc")
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(getattr(row, s), 0 if s in ('support', 'tp', 'fp', 'fn') else 3)}"
                  "</td>" for s in stats) + "</tr>"
        for name, row in document.per_class.items())
    parts.append("<h3>Per class</h3><table class=\"sortable\"><thead><tr><th>class</th>"
                 + "".join(f"<th>{s}</th>" for s in stats) + f"</tr></thead><tbody>{body}"
                 "</tbody></table>")
    if document.clinical:
        parts.append(_clinical(document.clinical))
    if document.temperature:
        parts.append(_temperature(document.temperature))
    if document.conformal:
        parts.append(_conformal(document.conformal))
    for note in document.notes:
        parts.append(f'<div class="warn">{html.escape(note.message)}</div>')
    for name, caption in (("misclassified", "Misclassified"),
                          ("top_losses", "Top losses"), ("error_rate", "Error rate")):
        picture = _image(folder.picture(name), caption)
        if picture:
            parts.append(f"<h3>{caption}</h3>{picture}")
    explanations = folder.read(Explanations)
    if explanations and explanations.error is None:
        parts.append(_explanations(explanations, folder))
    elif explanations:
        parts.append(f'<div class="warn">no explanations: {html.escape(explanations.error)}'
                     "</div>")
    return "".join(parts)


def _explanations(explanations: Explanations, folder: ModelFolder) -> str:
    """The deletion scores against the random map's, a warning for the maps that are no
    better than random, and the maps."""
    deletion = explanations.deletion
    unfaithful = unfaithful_methods(deletion)

    def verdict(method: str) -> str:
        if method == "random":
            return "the reference"
        return "no better than random" if method in unfaithful else "better than random"

    cells = "".join(f"<tr><td>{html.escape(m)}</td><td>{v:.3f}</td><td>{verdict(m)}</td></tr>"
                    for m, v in deletion.items())
    warning = ""
    if unfaithful:
        warning = (f'<div class="warn">Not faithful for this model: '
                   f"{display.names(html.escape(m.replace('_', ' ')) for m in unfaithful)} "
                   "removes the pixels it marks without lowering the model's confidence more "
                   "than removing random pixels does, so those maps do not show what the "
                   "model uses: do not read them as evidence.</div>")
    return ("<h3>Explanations</h3><p class=\"muted\">Deletion score: mean probability of the "
            "explained class while the most-attributed pixels are removed (lower = the map "
            "finds what the model uses); a method is evidence only if it scores below a "
            "random map. Maps are drawn over the images as the model sees them (its size and "
            "channels).</p><table><thead><tr><th>method</th><th>deletion</th>"
            f"<th>against random</th></tr></thead><tbody>{cells}</tbody></table>{warning}"
            + _image(folder.picture("explanations"), "explanation maps"))


def _temperature(found: TemperatureScaling) -> str:
    """Temperature scaling: the fitted temperature and calibration before and after."""
    rows = "".join(
        f"<tr><td>{html.escape(name.replace('_', ' '))}</td><td>{_fmt(values.before)}</td>"
        f"<td>{_fmt(values.after)}</td></tr>" for name, values in found.test.items())
    nll = found.validation_nll
    return ("<h3>Calibration</h3>"
            f"<p>Temperature scaling: every logit divided by <b>{found.value:.3f}</b>, "
            f"fitted on the {found.validation_images} validation images (their negative "
            f"log-likelihood {nll.before:.4f} → {nll.after:.4f}). It never changes the "
            "predicted class; predict returns the calibrated probabilities. On test:</p>"
            "<table><thead><tr><th>metric</th><th>as trained</th><th>calibrated</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def _conformal(found: ConformalSummary) -> str:
    """Conformal prediction sets: coverage on test against the target, sizes, per class."""
    target = found.coverage_target
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt(row.coverage, 3)} "
        f"[{_fmt(row.low, 3)}, {_fmt(row.high, 3)}]</td><td>{row.images}</td>"
        f"<td>{'below target' if row.below_target else ''}</td></tr>"
        for name, row in found.per_class.items())
    sizes = ", ".join(f"{count} of size {size}" for size, count in found.set_sizes.items()
                      if count)
    flagged = found.flagged
    warning = (f'<div class="warn">coverage of {html.escape(", ".join(flagged))} is below '
               f"the {target:.0%} target by more than the randomness of the calibration "
               "and test images explains (beta-binomial, corrected for the number of "
               "classes): the sets are reliable on average, not for this class</div>"
               if flagged else "")
    return ("<h3>Prediction sets</h3>"
            f"<p>Split conformal sets ({html.escape(found.score.upper())} score) for "
            f"{target:.0%} coverage, calibrated on {found.calibration_images} validation "
            f"images: on test they held the true class for <b>{_fmt(found.coverage, 3)}</b> "
            f"of images [{_fmt(found.low, 3)}, {_fmt(found.high, 3)}], with "
            f"{_fmt(found.mean_set_size, 2)} classes on average ({html.escape(sizes)}). "
            "The guarantee holds on average over images, not for each class:</p>"
            "<table><thead><tr><th>class</th><th>coverage [CI]</th><th>images</th><th></th>"
            f"</tr></thead><tbody>{rows}</tbody></table>{warning}")


def _clinical(clinical: ClinicalReading) -> str:
    """The positive reading at argmax and at the validation threshold; what is positive and
    where the threshold comes from are said once, above the table."""
    rows = []
    chosen = clinical.chosen_threshold
    readings = [("argmax", clinical.argmax)]
    if clinical.threshold is not None and chosen is not None:
        readings.append((f"threshold {chosen.threshold:.3f}", clinical.threshold))
    for label, values in readings:
        rows.append(f"<tr><td>{html.escape(label)}</td>"
                    + "".join(_interval(getattr(values, k)) for k in ("sensitivity",
                                                                       "specificity",
                                                                       "ppv", "npv"))
                    + f"<td>{int(values.missed_positives.value)}</td>"
                    f"<td>{int(values.false_alarms.value)}</td></tr>")
    source = ""
    if chosen:
        source = (f" The threshold on the positive probability is chosen on the validation "
                  f"split only ({html.escape(chosen.method or '')}"
                  + (f"; {html.escape(chosen.note)}" if chosen.note else "") + ").")
    return (f"<h3>Clinical reading</h3><p class=\"muted\">{html.escape(_positive_name(clinical))}"
            f" read as positive, the rest as negative.{source}</p>"
            "<table><thead><tr><th>decision</th><th>sensitivity</th><th>specificity</th>"
            "<th>PPV</th><th>NPV</th><th>missed positives</th><th>false alarms</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def write_report(folder: RunFolder, progress: str = "quiet") -> Path:
    """Build and write the run's report.html atomically; returns its path."""
    return folder.write_report(build_report(folder, progress))
