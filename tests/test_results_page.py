"""RESULTS.md is what its kept run summaries give, never a hand edit."""

import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _results_module():
    spec = importlib.util.spec_from_file_location("results", ROOT / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command() -> list[str]:
    header = (ROOT / "RESULTS.md").read_text(encoding="utf-8").split("\n")[2]
    found = re.search(r"`python benchmarks/results\.py ([^`]+)`", header)
    assert found, header
    return shlex.split(found.group(1))


def test_results_page_matches_its_run_summaries(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert _results_module().main([*_command(), "--check"]) == 0, capsys.readouterr().out


def test_a_hand_edited_results_page_fails_the_check(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    results = _results_module()
    command = _command()
    command[command.index("--out") + 1] = str(tmp_path / "RESULTS.md")
    assert results.main(command) == 0
    assert results.main([*command, "--check"]) == 0
    page = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    edited = page.replace("| visionbench: best | 0.", "| visionbench: best | 1.", 1)
    assert edited != page
    (tmp_path / "RESULTS.md").write_text(edited, encoding="utf-8")
    assert results.main([*command, "--check"]) == 1
    assert "differs from what its run folders give" in capsys.readouterr().out
