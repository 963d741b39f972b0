"""`visionbench app`: the logic through Streamlit's AppTest (uploads, the numbers against
`visionbench predict`, refusals, flags, the leaderboard page), the launch folder and
command, and one real session in headless Chromium that uploads an image and saves a
screenshot (`test-artifacts/`)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import make_class_folders, pattern, run_yaml
from visionbench.app.launch import (
    REPORT_URL,
    AppSettings,
    streamlit_command,
    write_launch_folder,
)
from visionbench.cli import main
from visionbench.errors import UserError

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CLASSES = ("healthy", "glioma", "meningioma")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of two small models on a three-class task read as tumour / no
    tumour, with explanations (so the app has a most faithful method to show)."""
    root = tmp_path_factory.mktemp("app")
    data = make_class_folders(root / "data", dict.fromkeys(CLASSES, 14))
    return run_yaml(root, "scans", f"""
data:
  source: folder
  path: {data}
  preprocess: {{size: 16}}
  labels: {{positive_group: {{name: tumour, classes: [glioma, meningioma]}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
train: {{epochs: 8, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 2, methods: [gradcam, occlusion]}},
           error_examples: 0, calibration: temperature, conformal: {{coverage: 0.8}}}}
""")


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _drop(run: Path) -> dict[str, bytes]:
    """What a user drops: three new scans, a copy of a training image and a damaged PNG (a
    text file the uploader itself refuses: see the test of hostile drops)."""
    hashes = json.loads((run / "data" / "training_hashes.json").read_text())
    learned = run.parents[2] / "data" / hashes["ids"][0]
    return {"new 0.png": _png(pattern(0, 900)), "new 1.png": _png(pattern(1, 901)),
            "new 2.png": _png(pattern(2, 902)), "copy.png": learned.read_bytes(),
            "damaged.png": b"\x89PNG\r\n\x1a\nnot really"}


def _text(element) -> str:
    """An element's text as the user reads it (names are escaped for Markdown)."""
    return element.value.replace("\\", "")


def _app(run: Path, folder: Path, model: str | None = None) -> AppTest:
    script = write_launch_folder(run, model, folder)
    return AppTest.from_file(str(script), default_timeout=120).run()


def _predict_csv(run: Path, files: list[Path], model: str | None,
                 capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, files),
                 *(["--model", model] if model else [])]) == 0
    return {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}


def test_the_app_shows_predicts_numbers_and_says_why_a_file_is_refused(run, tmp_path, capsys):
    dropped = _drop(run)
    at = _app(run, tmp_path / "launch")
    assert not at.exception
    at.file_uploader(key="images").set_value(
        [(name, data, "application/octet-stream") for name, data in dropped.items()]).run()
    assert not at.exception
    shown = {p.source: p for p in at.session_state["predictions"]}
    assert set(shown) == set(dropped)

    # The same numbers as `visionbench predict` on the same files (one code path).
    on_disk = tmp_path / "dropped"
    on_disk.mkdir()
    for name, data in dropped.items():
        (on_disk / name).write_bytes(data)
    printed = _predict_csv(run, [on_disk / n for n in shown], None, capsys)
    for name, prediction in shown.items():
        row = printed[name]
        if row["error"]:
            assert prediction.error == row["error"]
            continue
        assert prediction.predicted == row["predicted"]
        for label in CLASSES:
            assert round(prediction.probabilities[label], 6) == float(row[f"prob_{label}"])
        assert str(prediction.positive) == row["positive"]
        assert str(prediction.uncertain) == row["uncertain"]
        assert (prediction.duplicate or "") == row["duplicate_of_training"]

    errors = [_text(e) for e in at.error]
    assert any(e.startswith("damaged.png: not read: cannot read image") for e in errors)
    copies = [_text(w) for w in at.warning if "copies a training image" in _text(w)]
    assert copies == [f"copy.png copies a training image ({shown['copy.png'].duplicate}): the "
                      "model learnt from it, so its answer here says nothing about new images."]
    assert shown["copy.png"].duplicate.startswith("exact: ")
    # One chart per readable image, whose bars are the probabilities.
    charts = at.get("plotly_chart")
    readable = [p for p in shown.values() if p.error is None]
    assert len(charts) == len(readable) == 4
    first = json.loads(charts[0].proto.spec)["data"][0]
    assert first["x"] == pytest.approx([readable[0].probabilities[c] for c in first["y"]])
    readings = [_text(m) for m in at.markdown if _text(m).startswith("Reading")]
    assert len(readings) == 4
    assert all(("POSITIVE" in r) == p.positive for r, p in zip(readings, readable, strict=True))
    # Calibrated probabilities and the conformal set, as predict gives them.
    sets = [_text(m) for m in at.markdown if _text(m).startswith("80% prediction set: ")]
    given = [printed[p.source]["prediction_set"].split("|") for p in readable]
    assert sets == [f"80% prediction set: {', '.join(classes)}" for classes in given]


def test_choosing_another_model_in_the_sidebar_predicts_with_it(run, tmp_path, capsys):
    recommended = json.loads((run / "comparison.json").read_text())["recommended"]
    other = next(m for m in ("cnn", "mlp") if m != recommended)
    at = _app(run, tmp_path / "launch")
    assert at.sidebar.selectbox[0].value == recommended
    at.sidebar.selectbox[0].select(other).run()
    image = _png(pattern(1, 950))
    at.file_uploader(key="images").set_value(("scan.png", image, "image/png")).run()
    assert not at.exception
    (tmp_path / "scan.png").write_bytes(image)
    row = _predict_csv(run, [tmp_path / "scan.png"], other, capsys)["scan.png"]
    prediction = at.session_state["predictions"][0]
    assert [round(prediction.probabilities[c], 6) for c in CLASSES] == [
        float(row[f"prob_{c}"]) for c in CLASSES]


def test_too_many_images_at_once_are_refused_one_by_one(run, tmp_path):
    at = _app(run, tmp_path / "launch")
    image = _png(pattern(0, 960))
    at.file_uploader(key="images").set_value(
        [(f"scan {i}.png", image, "image/png") for i in range(52)]).run()
    assert len(at.session_state["predictions"]) == 50
    refused = [_text(e) for e in at.error if "at most 50 images at a time" in _text(e)]
    assert [r.split(":")[0] for r in refused] == ["scan 50.png", "scan 51.png"]


def test_the_leaderboard_page_lists_every_model_and_links_the_report(run, tmp_path):
    write_launch_folder(run, None, tmp_path / "launch")
    settings = (tmp_path / "launch" / "app.json").read_text()
    at = AppTest.from_string(
        "from visionbench.app.launch import AppSettings\n"
        "from visionbench.app.pages import leaderboard_page\n"
        f"leaderboard_page(AppSettings.model_validate_json({settings!r}))\n",
        default_timeout=60).run()
    assert not at.exception
    scores, versus = (table.value for table in at.table)
    assert sorted(scores["model"]) == sorted(versus["model"]) == ["cnn", "mlp"]
    assert "validation accuracy" in scores.columns
    assert "recommended" in set(versus["vs recommended"])
    link = at.get("link_button")[0]
    assert link.proto.url == REPORT_URL
    assert (tmp_path / "launch" / "static" / "report.html").read_bytes() == (
        run / "report.html").read_bytes()


def test_the_launch_folder_and_command_keep_the_app_offline_and_local(run, tmp_path):
    script = write_launch_folder(run, "mlp", tmp_path / "launch")
    settings = AppSettings.model_validate_json((tmp_path / "launch" / "app.json").read_text())
    assert settings == AppSettings(run_dir=run.resolve(), model="mlp", report=True)
    # The entry script names nothing of the run: a run's names never become code.
    assert str(run) not in script.read_text()
    command = streamlit_command(script, "127.0.0.1", 8765)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    for option in ("--server.address=127.0.0.1", "--server.port=8765",
                   "--browser.gatherUsageStats=false", "--server.headless=true",
                   "--server.enableStaticServing=true", "--server.maxUploadSize=20"):
        assert option in command
    with pytest.raises(UserError, match="not a run folder"):
        write_launch_folder(tmp_path, None, tmp_path / "elsewhere")


def test_app_on_a_wrong_folder_model_or_port_is_a_one_line_answer(run, tmp_path, capsys):
    assert main(["app", str(tmp_path / "missing")]) == 2
    assert main(["app", str(run), "--model", "nope"]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["app", str(run), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("error:") == 3
    assert "choose another --port" in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _browser() -> tuple[object, str]:
    """Playwright's sync API and Debian's Chromium; under CI a missing one fails the test."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or chromium is None:
        missing = "playwright" if sync_playwright is None else "chromium"
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {missing} (CI installs both)")
        pytest.skip(f"{missing} is not installed")
    return sync_playwright, chromium


@pytest.mark.slow
def test_a_real_browser_uploads_a_scan_and_reads_the_answer(run, tmp_path):
    sync_playwright, chromium = _browser()
    port = _free_port()
    scan = tmp_path / "scan.png"
    pattern(2, 970, size=64).save(scan)
    expected = _predicted(run, scan)
    # `timeout` stops the server by itself should this test die before its cleanup.
    server = subprocess.Popen(
        ["timeout", "300", sys.executable, "-m", "visionbench", "app", str(run),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/_stcore/health", server)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            hosts = set()
            page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("input[type=file]").set_input_files(str(scan))
            headline = f"scan.png: {expected['predicted']}"
            page.get_by_text(headline).wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            verdict = "POSITIVE" if expected["positive"] else "negative"
            page.get_by_text(re.compile(f"^Reading: {verdict} ")).wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # let the chart finish drawing for the picture
            page.screenshot(path=str(ARTIFACTS / "app-predict.png"), full_page=True)

            page.get_by_role("link", name="Leaderboard").click()
            page.get_by_text("Open the full report").wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "app-leaderboard.png"), full_page=True)
            # Every column of the leaderboard shows in full beside the sidebar at 1400 px.
            assert page.get_by_text("vs recommended").is_visible()
            assert page.evaluate(CUT_TABLES) == []
            report = page.request.get(f"http://127.0.0.1:{port}/{REPORT_URL}")
            assert report.ok and report.headers["content-type"].startswith("text/html")
            browser.close()
        # Fully offline: the page asked nothing of any other machine.
        assert hosts == {f"127.0.0.1:{port}"}
        assert (ARTIFACTS / "app-predict.png").stat().st_size > 10_000
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


# The tables of a Streamlit page that are cut: a box between a table and the page's column
# whose content is wider than the box, or a cell past the column's right edge.
CUT_TABLES = """() => {
  const column = document.querySelector('[data-testid="stMainBlockContainer"]');
  const right = column.getBoundingClientRect().right;
  const tables = Array.from(document.querySelectorAll('[data-testid="stTable"] table'));
  const problems = tables.length ? [] : ['no table'];
  tables.forEach(table => {
    for (let box = table; box && box !== column; box = box.parentElement) {
      if (box.scrollWidth > box.clientWidth + 1) {
        problems.push(box.tagName + ' needs ' + box.scrollWidth + ' px, has ' + box.clientWidth);
      }
    }
    table.querySelectorAll('th, td').forEach(cell => {
      if (cell.getBoundingClientRect().right > right + 1) { problems.push(cell.textContent); }
    });
  });
  return problems;
}"""


def _predicted(run: Path, scan: Path) -> dict[str, object]:
    from visionbench import load

    found = load(run).predict([scan])[0]
    return {"predicted": found.predicted, "positive": found.positive}


def _wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the app stopped: {server.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {seconds} s")


def test_hostile_drops_run_nothing_and_the_uploader_refuses_other_types(run, tmp_path,
                                                                       fake_ghostscript):
    mark = fake_ghostscript  # Streamlit or Pillow starting Ghostscript leaves it
    postscript = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n"
    at = _app(run, tmp_path / "launch")
    at.file_uploader(key="images").set_value(
        [("scan.png", postscript, "image/png"), ("scan.jpg", postscript, "image/jpeg"),
         ("good.png", _png(pattern(0, 990)), "image/png")]).run()
    assert not at.exception
    shown = {p.source: p for p in at.session_state["predictions"]}
    assert "not an image in a format visionbench reads" in shown["scan.png"].error
    assert shown["good.png"].error is None
    assert not mark.exists(), "Ghostscript ran"
    at.file_uploader(key="images").set_value([("notes.txt", b"hello", "text/plain")]).run()
    assert "Invalid file extension" in at.exception[0].message


@pytest.mark.slow
def test_the_app_keeps_no_batch_after_the_next_one(run, tmp_path, monkeypatch):
    import gc
    import tracemalloc

    import numpy as np
    from PIL import Image
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    # What the app hands Streamlit to keep and serve for each picture it shows.
    stored: list[int] = []
    keep = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, *args, **kwargs):
        stored.append(len(path_or_data) if isinstance(path_or_data, bytes) else 0)
        return keep(self, path_or_data, *args, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)

    rng = np.random.default_rng(0)
    batches = [[(f"big {b}-{i}.png", _png(Image.fromarray(
        rng.integers(0, 256, (1200, 1200, 3), dtype=np.uint8))), "image/png")
                for i in range(6)] for b in range(3)]
    batch_bytes = sum(len(data) for _, data, _ in batches[0])
    at = _app(run, tmp_path / "launch")
    at.sidebar.toggle[0].set_value(False).run()
    tracemalloc.start()
    held = []
    for batch in batches:
        at.file_uploader(key="images").set_value(batch).run()
        assert not at.exception and len(at.session_state["predictions"]) == 6
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    # What the app holds after three batches is about what it holds after one: each
    # batch is released when the next arrives.
    assert held[2] - held[0] < batch_bytes / 2, (held, batch_bytes)
    # Streamlit keeps only small pictures the app decoded itself, never the uploads.
    # (Each upload here is 1.3 MB; a shown picture at most 384 px a side.)
    assert len(stored) >= 18 and max(stored) < 400_000 < batch_bytes / 6, stored


def test_a_batch_of_uploads_is_checked_for_shift_against_the_training_images(run, tmp_path):
    import numpy as np
    from PIL import Image

    def dark(image: Image.Image) -> Image.Image:
        return Image.fromarray((np.asarray(image).astype(float) * 0.3).astype(np.uint8))

    at = _app(run, tmp_path / "launch")
    # The data's own kind of image (the pattern's index sets its frequency): copies of the
    # run's images, as a scanner would send more of the same.
    familiar = [(f"scan {i}.png", _png(pattern(i % 3, i // 3)), "image/png")
                for i in range(24)]
    at.file_uploader(key="images").set_value(familiar).run()
    assert not at.exception
    said = [_text(c) for c in at.caption if _text(c).startswith("Shift: ")]
    assert said and "these 24 images look like the training images" in said[0]
    darker = [(name, _png(dark(pattern(i % 3, i // 3))), kind)
              for i, (name, _, kind) in enumerate(familiar)]
    at.file_uploader(key="images").set_value(darker).run()
    warned = [_text(w) for w in at.warning if _text(w).startswith("Shift: ")]
    assert warned and "differ from the training images" in warned[0]
    assert "moved most: " in warned[0]
    # The same test through the library: darkening moved the brightness.
    from visionbench import load

    found, _ = load(run).check_shift([io.BytesIO(data) for _, data, _ in darker])
    assert found.shifted
    assert next(row for row in found.properties if row.name == "brightness").moved
