"""The report, as a person would see it: built from the folder, opened in a real browser."""

from __future__ import annotations

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
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                       timeout=900, check=False)
        if not shutil.which("chromium"):
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600,
                           check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                           timeout=900, check=False)
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Debian's chromium package is not installed and could not be installed "
                    "(needs root and the Debian registry): the browser check did not run")
    return found


def test_report_renders_in_a_browser_without_console_errors(run_folder):
    browser = _chromium()
    report = (run_folder / "report.html").resolve()
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000"]
    done = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True,
                          text=True, timeout=300, check=False)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = done.stdout
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
