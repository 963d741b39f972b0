"""The report, as a person would see it: built from the folder, opened in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from visionbench.cli import main

ARGS = ["--set", "train.epochs=1", "--set", "data.split.limit_per_class=15", "--set",
        "train.progress=quiet", "--set", "evaluate.bootstrap=200", "--set",
        "evaluate.explain.images=4"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    os.environ["VISIONBENCH_CACHE"] = str(out / "cache")
    assert main(["run", "quickstart", "--set", f"output.dir={out}", *ARGS]) == 0
    return next((out / "quickstart").iterdir())


def test_report_is_rebuilt_identically_from_the_folder(run_folder):
    first = (run_folder / "report.html").read_bytes()
    assert main(["report", str(run_folder)]) == 0
    assert (run_folder / "report.html").read_bytes() == first
    text = first.decode()
    assert re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text) is None, (
        "nothing may load from the network")
    for anchor in ("summary", "leaderboard", "data", "model-small_cnn", "model-wide_cnn",
                   "model-mlp"):
        assert f'id="{anchor}"' in text
    assert len(first) < 15 * 2**20


def _chromium() -> str:
    """Debian's Chromium, which .ci/run installs; without it a browser test fails under CI
    (it must not pass by skipping) and is skipped elsewhere."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Debian's chromium package is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must run the browser tests")
    pytest.skip(f"{message}: the browser check did not run")


BROWSER = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           "--disable-sync"]


def _dump(report: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and the console lines it printed."""
    done = subprocess.run([_chromium(), *BROWSER, "--dump-dom", report.resolve().as_uri()],
                          capture_output=True, text=True, timeout=300, check=False)
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_in_a_browser_without_console_errors(run_folder):
    report = (run_folder / "report.html").resolve()
    dom, console = _dump(report)
    assert console == [], console
    common = [_chromium(), *BROWSER]
    expected = len(re.findall(r'<div class="plot" id="plot\d+"', report.read_text()))
    rendered = len(re.findall(r'class="plot-container plotly"', dom))
    assert expected >= 15 and rendered == expected
    assert dom.count("<tr>") > 10 and "Recommended:" in dom
    screenshot = run_folder / "report.png"
    subprocess.run([*common, "--window-size=1300,3000", f"--screenshot={screenshot}",
                    report.as_uri()], capture_output=True, timeout=300, check=False)
    assert screenshot.is_file() and screenshot.stat().st_size > 50_000


def test_explain_command_on_given_images(run_folder, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    picture = tmp_path / "my digit.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype("uint8")).save(
        picture)
    assert main(["explain", str(run_folder), "--model", "small_cnn", "--images", str(picture),
                 "--method", "gradcam", "--method", "occlusion"]) == 0
    out = run_folder / "small_cnn" / "explained"
    found = json.loads((out / "explanations.json").read_text())
    assert found["methods"] == ["gradcam", "occlusion"] and found["images"] == [str(picture)]
    assert set(found["deletion"]) == {"random", "gradcam", "occlusion"}
    assert (out / "explanations.png").stat().st_size > 5000
    assert main(["explain", str(run_folder), "--model", "nope"]) == 2


HOSTILE = {"0": "</script><script>document.title='PWNED'</script>",
           "1": "<img src=x onerror=\"document.title='PWNED'\">",
           "2": "x\" onmouseover=\"document.title='PWNED'",
           # plotly draws a subset of HTML in chart text: links and styles must stay text.
           "3": "<a href=\"https://evil.example/\">Click to verify</a>",
           "4": "<span style=\"font-size:80px\">big</span>"}


def test_hostile_class_names_render_as_text_in_a_browser(tmp_path):
    config = tmp_path / "hostile.yaml"
    rename = "".join(f"      '{k}': {json.dumps(v)}\n" for k, v in HOSTILE.items())
    config.write_text(
        "data:\n  source: digits\n  split: {limit_per_class: 12}\n  labels:\n    rename:\n"
        + rename + "models:\n  mlp: {preset: mlp}\ntrain: {epochs: 1, progress: quiet}\n"
        "evaluate: {bootstrap: 20, robustness: {}, explain: {images: 0}, error_examples: 2}\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n", encoding="utf-8")
    assert main(["run", str(config)]) == 0
    report = next((tmp_path / "runs" / "hostile").iterdir()) / "report.html"
    dom, console = _dump(report)
    assert console == [], console
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.startswith("visionbench report") and "PWNED" not in dom.split("</head>")[0]
    # Each name is on the page as text, escaped, and made no element of its own.
    for name in HOSTILE.values():
        assert html.escape(name, quote=False) in dom
    # No element of the page got an event handler or a source from a name, and no chart
    # made a link or a style of one.
    assert _handlers(dom) == []
    assert _attributes_from_names(dom) == []


def _attributes_from_names(dom: str) -> list[str]:
    """Elements (HTML or a chart's SVG) whose link or style came from a hostile name."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Elements(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(f"<{tag} {name}={value}>" for name, value in attrs
                         if (name in ("href", "xlink:href") and "evil.example" in (value or ""))
                         or (name == "style" and "font-size:80px" in (value or "")))

    Elements().feed(dom)
    return found


def _handlers(dom: str) -> list[str]:
    from html.parser import HTMLParser

    found: list[str] = []

    class Elements(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(f"<{tag} {name}>" for name, value in attrs
                         if name.startswith("on") or (tag == "img" and name == "src"
                                                      and value == "x"))

    Elements().feed(dom)
    return found


def test_explain_refuses_a_decompression_bomb_in_one_line(run_folder, tmp_path, capsys,
                                                          monkeypatch):
    import numpy as np
    from PIL import Image

    picture = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((100, 100), dtype="uint8")).save(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is now a bomb
    assert main(["explain", str(run_folder), "--model", "mlp", "--images", str(picture)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read image {picture}: image is over the limit for decoding" in err.replace(
        "\n", "")
    assert "Traceback" not in err


def test_duplicate_banners_are_ranked_merged_and_say_what_a_validation_leak_biases():
    from visionbench.report.sections.summary import duplicate_banners
    from visionbench.rundir import DataRecord, Notice

    def found(pairs, images, conflicts=0):
        return {"pairs": pairs, "images": images, "label_conflicts": conflicts, "examples": []}

    record = DataRecord(
        source="s", classes=["a", "b"], channels=1, image_shape=[8, 8],
        splits={}, totals={},
        duplicates={"policy": "warn", "near_threshold": 4,
                    "exact": {"across": {"train~val": found(2, 2), "train~test": found(3, 3)}},
                    "near": {"across": {"train~val": found(4, 3, 1), "val~test": found(1, 1)}}},
        warnings=[Notice(code="test_duplicates", message="4 test image(s) duplicate ...",
                         data={"images": 4})])
    banners = duplicate_banners(record)
    assert len(banners) == 2, "one banner per kind of leak, not one per kind and place"
    assert banners[0].startswith("4 test image(s) duplicate training or validation images "
                                 "(3 exact pair(s), 1 near pair(s)): test scores on them "
                                 "measure memory")
    assert banners[1].startswith("5 validation image(s) duplicate training images (2 exact "
                                 "pair(s), 4 near pair(s), 1 of them with different labels): "
                                 "they inflate validation scores")
    assert "memory, not generalisation" not in banners[1]
    assert "chooses the recommended model, stops training early and sets thresholds" in banners[1]


# Measures every text (and toolbar button) of every chart after plotly drew it: a text box
# outside its chart is clipped, two boxes of one chart that intersect (by more than 2 px each
# way) overlap. Then every other element of the page: one wider than the page's column, or
# whose content overflows its box, is cut.
LAYOUT_CHECK = """<script>
function measure() {
  if (document.body.dataset.charts !== 'drawn') { setTimeout(measure, 200); return; }
  var problems = [];
  document.querySelectorAll('.plot').forEach(function (plot) {
    var frame = plot.getBoundingClientRect();
    // Text, and plotly's toolbar buttons, which must not cover a title either.
    var items = Array.from(plot.querySelectorAll('svg text, .modebar-btn'));
    var boxes = items.map(function (t) {
      var label = t.classList.contains('modebar-btn') ? 'toolbar' : t.textContent.trim();
      return [label, t.getBoundingClientRect(), getComputedStyle(t)];
    }).filter(function (b) {
      return b[0] && b[1].width > 0 && b[1].height > 0 && b[2].visibility !== 'hidden'
        && b[2].opacity !== '0' && b[2].display !== 'none';
    });
    boxes.forEach(function (b) {
      var r = b[1];
      if (r.left < frame.left - 1 || r.right > frame.right + 1 || r.top < frame.top - 1
          || r.bottom > frame.bottom + 1) { problems.push('clipped in ' + plot.id + ': ' + b[0]); }
    });
    for (var i = 0; i < boxes.length; i++) {
      for (var j = i + 1; j < boxes.length; j++) {
        var a = boxes[i][1], c = boxes[j][1];
        var w = Math.min(a.right, c.right) - Math.max(a.left, c.left);
        var h = Math.min(a.bottom, c.bottom) - Math.max(a.top, c.top);
        if (w > 2 && h > 2) {
          problems.push('overlap in ' + plot.id + ': "' + boxes[i][0] + '" / "'
                        + boxes[j][0] + '"');
        }
      }
    }
  });
  // Tables and anything else on the page: nothing wider than the page's column, and no
  // box whose content is cut or needs a scroll bar (a clipped right border, a hidden column).
  var main = document.querySelector('main');
  var right = main.getBoundingClientRect().right
              - parseFloat(getComputedStyle(main).paddingRight);
  main.querySelectorAll('*').forEach(function (el) {
    if (el.closest('.plot')) { return; }
    var r = el.getBoundingClientRect();
    if (r.width === 0) { return; }
    var name = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
    var text = el.textContent.trim().slice(0, 40);
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') {
      problems.push('cut: ' + name + ' needs ' + el.scrollWidth + ' px, has ' + el.clientWidth
                    + ': ' + text);
    }
    if (r.right > right + 1) {
      problems.push('past the page: ' + name + ' ends at ' + Math.round(r.right)
                    + ' px, the page at ' + Math.round(right) + ': ' + text);
    }
  });
  var out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify(problems);
  document.body.appendChild(out);
}
window.addEventListener('load', function () { setTimeout(measure, 500); });
</script>"""


def layout_problems(report: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Overlapping or clipped chart texts, and tables or other elements cut or past the
    page's column, of `report` at 1400 px; and its console lines."""
    checked = tmp_path / f"checked-{report.parent.name}.html"
    checked.write_text(report.read_text().replace("</body>", LAYOUT_CHECK + "</body>"))
    done = subprocess.run([_chromium(), *BROWSER, "--window-size=1400,4000", "--dump-dom",
                           checked.resolve().as_uri()],
                          capture_output=True, text=True, timeout=300, check=False)
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', done.stdout, re.S)
    assert found, "the layout check did not run"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def test_quickstart_charts_have_no_overlapping_or_clipped_text(run_folder, tmp_path):
    problems, console = layout_problems(run_folder / "report.html", tmp_path)
    assert console == [], console
    assert problems == []


@pytest.mark.slow
def test_the_quickstart_report_stays_under_3_mb_and_offline(tmp_path):
    # Every default of the quickstart that shapes the page (explanations, error examples,
    # robustness, bootstrap); fewer epochs change no picture's size.
    assert main(["run", "quickstart", "--set", f"output.dir={tmp_path}", "--set",
                 "train.epochs=2", "--set", "train.progress=quiet"]) == 0
    report = next((tmp_path / "quickstart").iterdir()) / "report.html"
    text = report.read_text()
    assert report.stat().st_size < 3_000_000, report.stat().st_size
    assert text.count('id="plotly-gzip"') == 1, "plotly.js is included once"
    assert "<script src=" not in text and 'href="http' not in text
