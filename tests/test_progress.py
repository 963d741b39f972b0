"""Long work after training says what it is doing, how far it is and what is left."""

from __future__ import annotations

from visionbench.runtime.progress import Steps


def test_steps_print_what_is_done_with_an_estimate(capsys, monkeypatch):
    monkeypatch.setattr(Steps, "interval", 0.0)
    with Steps("m robustness", 3, "lines") as steps:
        for what in ("noise 0.1", "noise 0.2", "blur 1"):
            steps.step(what)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "m robustness: noise 0.1 (1/3)"
    assert lines[2].startswith("m robustness: blur 1 (3/3, about ") and lines[2].endswith(
        " s left)")


def test_quiet_steps_and_fast_work_print_nothing(capsys):
    with Steps("m", 3, "quiet") as steps:
        steps.step("a")
    with Steps("m", 3, "lines") as steps:  # fast: under the interval
        steps.step("a")
        steps.step("b")
    assert capsys.readouterr().err == ""


def test_a_run_shows_progress_of_predictions_robustness_explanations_and_the_report(
        class_folder, tmp_path, capsys, monkeypatch):
    from visionbench.config import config_from_dict
    from visionbench.orchestrate import run_config

    monkeypatch.setattr(Steps, "interval", 0.0)
    config = config_from_dict({
        "output": {"dir": str(tmp_path / "runs"), "name": "progress"},
        "data": {"source": "folder", "path": str(class_folder), "preprocess": {"size": 8}},
        "models": {"m": {"layers": [{"type": "conv", "filters": 4}, {"type": "flatten"}]}},
        "train": {"epochs": 1, "progress": "lines"},
        "evaluate": {"bootstrap": 0, "robustness": {"noise": [0.1, 0.2]},
                     "explain": {"images": 2, "methods": ["gradcam", "occlusion"]}},
    })
    from visionbench.report.run import SECTIONS

    run_config(config, report=lambda _: None)
    err = capsys.readouterr().err
    # One step per registered section and one per model: the count follows the registry.
    steps = len(SECTIONS.items()) + 1
    for line in ("m predictions: val (", "m predictions: test (",
                 "m robustness: noise 0.1 (1/2)", "m robustness: noise 0.2 (2/2",
                 "m explanations: gradcam (1/3)", "evaluation: model m (1/2)",
                 "evaluation: comparing the models (2/2", "m explanations: drawing the maps (3/3",
                 f"report: summary (1/{steps})", f"report: model m ({steps}/{steps}"):
        assert line in err, line


def test_a_step_longer_than_the_interval_is_announced_while_it_runs(capsys, monkeypatch):
    # A single slow step (predicting a large test split) printed nothing: a line came only
    # when a step started at least `interval` seconds after the last line.
    import time

    monkeypatch.setattr(Steps, "interval", 0.3)
    with Steps("m evaluation", 2, "lines") as steps:
        steps.step("quick")
        steps.step("test (3,000 images)")
        time.sleep(0.8)
        said = capsys.readouterr().err.splitlines()
        assert len(said) == 1 and said[0].startswith("m evaluation: test (3,000 images) (2/2")
    time.sleep(0.5)
    assert capsys.readouterr().err == "", "nothing is said once the steps are over"
