"""RESULTS.md is what its kept run summaries give, never a hand edit."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

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


def test_a_folder_that_is_not_a_run_is_one_line_naming_it(tmp_path, capsys):
    results = _results_module()
    for argv in (["--brain", str(tmp_path)],
                 ["--mnist", str(ROOT / "benchmarks" / "result_runs" / "mnist" / "20261122-063303"),
                  "--seeds", f"mnist={tmp_path}"]):
        with pytest.raises(SystemExit) as stop:
            results.main(argv)
        assert stop.value.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{tmp_path} is not a finished run folder (no leaderboard.json)" in message


def test_an_ablation_step_is_paired_with_the_model_it_adds_to(tmp_path):
    """A `+tta` row is compared with its own model, and the next model with the plain model
    before it, not with that test-time augmentation row (it adds nothing to it)."""
    import shutil

    import yaml

    kept = ROOT / "benchmarks" / "result_runs" / "ablation_brain" / "20261202-185614"
    folder = tmp_path / "run"
    shutil.copytree(kept, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    # lite2_all (with its +tta row) moved to the front: lite0 now comes after that row.
    config["models"] = {"lite2_all": config["models"]["lite2_all"],
                        **{k: v for k, v in config["models"].items() if k != "lite2_all"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                        encoding="utf-8")
    lines = _results_module().ablation_table(folder)
    rows = {cells[0]: cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines
             if line.startswith("| lite"))}
    assert list(rows)[:3] == ["lite2_all", "lite2_all+tta", "lite0"]
    assert rows["lite2_all"][3] == "–"
    assert rows["lite2_all+tta"][3] == "lite2_all"
    assert rows["lite0"][3] == "lite2_all"
    assert rows["lite0_ema"][3] == "lite0"
    # lite0 (0.7970) against lite2_all (0.8020) on the same 394 images: two fewer right.
    assert rows["lite0"][4].startswith("-0.0051 [")


def test_the_probability_tables_show_calibration_and_the_classes_sets_miss():
    """Temperature and conformal rows come from each model's evaluation.json: the fitted
    temperature with validation log loss falling, and a class whose coverage interval lies
    below the target named with it."""
    kept = ROOT / "benchmarks" / "result_runs" / "ablation_brain" / "20261202-185614"
    lines = _results_module().probability_table(kept)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| lite2_all |")]
    assert len(rows) == 2
    scaled, sets = rows
    before, after = (float(v) for v in scaled[2].split(" → "))
    assert float(scaled[1]) < 1 and after < before
    assert sets[1] == "aps, 90 %" and sets[2].startswith("0.886 [")
    assert sets[4].startswith("glioma_tumor 0.59 [") and sets[4].endswith("(100)")
