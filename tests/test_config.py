import subprocess
import sys
from pathlib import Path

import pytest

from visionbench.config import config_from_dict, dump_config, load_config
from visionbench.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_quickstart_loads_with_typed_sections():
    cfg = load_config("quickstart")
    assert cfg.data.source == "digits"
    assert cfg.output.name == "quickstart"
    assert set(cfg.models) == {"small_cnn", "wide_cnn", "mlp"}


def test_set_overrides_parse_yaml_values():
    cfg = load_config(
        "quickstart", ["train.epochs=3", "data.split.folds=5", "data.preprocess.size=[16, 12]"]
    )
    assert cfg.train.epochs == 3
    assert cfg.data.split.folds == 5
    assert cfg.data.preprocess.size == (16, 12)


def test_unknown_key_names_closest_key_and_file_line(tmp_path):
    path = write(tmp_path, "data:\n  source: digits\ntrain:\n  epochs: 2\n  batchsize: 8\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path} line 5" in message
    assert "'train.batchsize'" in message
    assert "did you mean 'batch_size'" in message


def test_unknown_key_inside_source_section_suggests_source_field(tmp_path):
    path = write(tmp_path, "data:\n  source: folder\n  pth: /x\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert "did you mean 'path'" in str(info.value)
    assert "line 3" in str(info.value)


def test_unknown_key_from_set_names_the_option():
    with pytest.raises(UserError, match=r"--set data.split.sead.*did you mean 'seed'"):
        load_config("quickstart", ["data.split.sead=1"])


def test_bad_value_says_which_key_and_why():
    with pytest.raises(UserError, match=r"data.split.val.*less than 1"):
        load_config("quickstart", ["data.split.val=1.5"])


def test_unknown_source_type_suggests_registered_one():
    with pytest.raises(UserError, match=r"'foldr' is not a data source; did you mean 'folder'"):
        load_config("quickstart", ["data.source=foldr"])


def test_set_without_equals_is_explained():
    with pytest.raises(UserError, match=r"KEY=VALUE"):
        load_config("quickstart", ["train.epochs"])


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "data:\n  source: digits\n  split: [unclosed\n")
    with pytest.raises(UserError, match=r"invalid YAML"):
        load_config(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_extends_deep_merges_parent_and_allows_chains():
    raw = {
        "data": {"source": "digits"},
        "models": {
            "base": {"preset": "mnist_baseline", "description": "base"},
            "variant": {"extends": "base", "description": "variant"},
            "variant2": {"extends": "variant", "activation": "tanh"},
        },
    }
    cfg = config_from_dict(raw)
    assert cfg.models["variant"].preset == "mnist_baseline"
    assert cfg.models["variant"].description == "variant"
    assert cfg.models["variant2"].description == "variant"
    assert cfg.models["variant2"].activation == "tanh"
    assert cfg.models["base"].activation == "relu"


def test_extends_errors():
    with pytest.raises(UserError, match=r"no model named 'bse'; did you mean 'base'"):
        config_from_dict(
            {"data": {"source": "digits"}, "models": {"base": {}, "v": {"extends": "bse"}}}
        )
    with pytest.raises(UserError, match=r"cycle"):
        config_from_dict(
            {"data": {"source": "digits"}, "models": {"a": {"extends": "b"}, "b": {"extends": "a"}}}
        )


def test_override_of_parent_reaches_children():
    raw = {
        "data": {"source": "digits"},
        "models": {"base": {"preset": "mlp"}, "child": {"extends": "base"}},
    }
    cfg = config_from_dict(raw, ["models.base.preset=mnist_baseline"])
    assert cfg.models["child"].preset == "mnist_baseline"
    assert cfg.models["child"].layers == cfg.models["base"].layers


def test_dump_round_trips(tmp_path):
    cfg = load_config("quickstart", ["data.split.seed=7"])
    path = write(tmp_path, dump_config(cfg))
    again = load_config(path)
    assert again.model_dump() == cfg.model_dump()
    assert dump_config(cfg).startswith("data:\n  source: digits")


def test_saved_config_has_provenance_and_reloads(tmp_path):
    from visionbench.provenance import save_config

    cfg = load_config("quickstart")
    path = save_config(cfg, tmp_path, command=["visionbench", "inspect"])
    text = path.read_text()
    assert "provenance:" in text and "numpy:" in text and "visionbench_commit" in text
    again = load_config(path)
    assert again.provenance is not None
    assert again.provenance.command == ["visionbench", "inspect"]
    assert again.data == cfg.data


def test_ensembles_must_name_models_of_the_config():
    base = {"data": {"source": "digits"}, "models": {"a": {"preset": "mlp"},
                                                      "b": {"preset": "mlp"}}}
    good = config_from_dict({**base, "evaluate": {"ensembles": {"ab": ["a", "b"]}}})
    assert good.evaluate.ensembles == {"ab": ["a", "b"]}
    for ensembles, message in (({"ab": ["a", "z"]}, "z is not a model of this config"),
                               ({"a": ["a", "b"]}, "a model is already called a"),
                               ({"aa": ["a", "a"]}, "two or more different models")):
        with pytest.raises(UserError, match=message):
            config_from_dict({**base, "evaluate": {"ensembles": ensembles}})


def test_module_call_is_recorded_as_a_command_to_retype():
    from visionbench.provenance import command_line

    module = ["/opt/src/visionbench/__main__.py", "run", "mnist"]
    assert command_line(module) == ["python", "-m", "visionbench", "run", "mnist"]
    script = ["/usr/bin/visionbench", "run", "mnist"]
    assert command_line(script) == script
    elsewhere = ["/opt/other/__main__.py", "run"]
    assert command_line(elsewhere) == elsewhere


TYPOS = [
    ("evaluate:\n  primary_metric: acuracy\n", 7, "evaluate.primary_metric: unknown metric "
     "'acuracy'; did you mean 'accuracy'?"),
    ("evaluate:\n  robustness: {nois: [0.1]}\n", 7, "evaluate.robustness.nois: unknown "
     "corruption 'nois'; did you mean 'noise'?"),
    ("evaluate:\n  explain: {methods: [gradcm]}\n", 7, "evaluate.explain.methods.0: unknown "
     "explanation method 'gradcm'; did you mean 'gradcam'?"),
    ("train:\n  optimizer: {name: adm}\n", 7, "train.optimizer.name: unknown optimizer "
     "'adm'; did you mean 'adam'?"),
    ("train:\n  schedule: {name: cosin}\n", 7, "unknown schedule 'cosin'; did you mean 'cosine'"),
    ("train:\n  balance: oversampel\n", 7, "unknown balance method 'oversampel'"),
]


@pytest.mark.parametrize(("section", "line", "message"), TYPOS)
def test_misspelt_registry_names_are_refused_at_load_with_their_line(tmp_path, section, line,
                                                                     message):
    # The data path does not exist: the typo must be found before any image is looked at.
    path = write(tmp_path, f"data:\n  source: folder\n  path: {tmp_path / 'absent'}\n"
                 "models:\n  m: {preset: mlp}\n" + section)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value)
    assert f"{path} line {line}" in str(info.value)
    assert "more problem" not in str(info.value)


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_cli_refuses_a_misspelt_metric_before_decoding(tmp_path, capsys, command):
    from visionbench.cli import main

    path = write(tmp_path, f"data:\n  source: folder\n  path: {tmp_path / 'absent'}\n"
                 "models:\n  m: {preset: mlp}\n")
    code = main([command, str(path), "--set", "evaluate.primary_metric=acuracy"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--set evaluate.primary_metric: evaluate.primary_metric: unknown metric 'acuracy'" \
        in err.replace("\n", "")
    assert "absent" not in err


def test_misspelt_layer_type_and_activation_name_the_closest(tmp_path):
    path = write(tmp_path, "data:\n  source: digits\nmodels:\n  m:\n    layers:\n"
                 "      - {type: cnv, filters: 3}\n      - {type: flatten}\n")
    with pytest.raises(UserError, match=r"line 6: models.m.layers.0.type: 'cnv' is not a layer "
                       r"type; did you mean 'conv'"):
        load_config(path)
    with pytest.raises(UserError, match=r"unknown activation 'rleu'; did you mean 'relu'"):
        config_from_dict({"data": {"source": "digits"},
                          "models": {"m": {"preset": "mlp", "activation": "rleu"}}})


def test_a_fresh_process_validates_registry_names():
    # The registries are filled by modules the config imports itself, not by whatever a
    # test happened to import first.
    import subprocess
    import sys

    code = ("from visionbench.config import load_config\n"
            "print(sorted({m.family_name for m in load_config('brain_tumor').models.values()}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['cnn', 'timm']"


def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path):
    rows = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        rows.append(f"{chr(97 + level)}: &{chr(97 + level)} " + "[" + ", ".join(
            [f"*{chr(96 + level)}"] * 10) + "]")
    path = write(tmp_path, "\n".join(rows) + "\ndata: {source: digits}\n")
    with pytest.raises(UserError, match="aliases expand to more than 100,000 values"):
        load_config(path)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = write(tmp_path, "data:\n  source: digits\ntrain:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"line 5: invalid YAML: key 'epochs' is given twice "
                       r"\(lines 4 and 5\)"):
        load_config(path)


def test_a_config_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  source: digits\n# café\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize("name", ['x" onmouseover="alert(2)', "../..", "/tmp/x", "data"])
def test_a_model_name_that_is_not_a_safe_folder_name_is_refused_at_load(name):
    with pytest.raises(UserError, match=r"a model name is letters, digits and _ \. \+ -"):
        config_from_dict({"data": {"source": "digits"}, "models": {name: {"preset": "mlp"}}})


def test_a_mistake_in_the_top_level_train_section_points_at_its_own_line(tmp_path):
    path = write(tmp_path, "data:\n  source: digits\ntrain:\n  epochs: 2\n"
                 "  optimizer: {name: sgd, lrr: 0.1}\nmodels:\n  m: {preset: mlp}\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 5: unknown key 'train.optimizer.lrr'")
    assert "more problem" not in message


def test_references_are_written_flat_and_their_metric_names_checked(tmp_path):
    from visionbench.config import config_from_dict

    config = config_from_dict({"data": {"source": "digits"}, "evaluate": {"references": {
        "study": {"accuracy": 0.74, "source": "its report"}}}})
    reference = config.evaluate.references["study"]
    assert reference.metrics == {"accuracy": 0.74} and reference.source == "its report"
    with pytest.raises(UserError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        config_from_dict({"data": {"source": "digits"}, "evaluate": {"references": {
            "study": {"acuracy": 0.74}}}})


def test_a_bad_key_is_refused_before_torch_or_any_registering_module_loads(tmp_path):
    # The command line's own path: the error comes from the config's structure alone.
    path = write(tmp_path, "data: {source: digits}\nmodles: {a: {preset: mlp}}\n")
    script = (
        "import sys\n"
        "from visionbench.cli import main\n"
        f"assert main(['run', {str(path)!r}]) == 2\n"
        "heavy = sorted({name.split('.')[0] for name in sys.modules} & "
        "{'torch', 'captum', 'timm', 'ray', 'torchvision', 'sklearn', 'cleanlab'})\n"
        "print('loaded:', heavy)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert "unknown key 'modles'; did you mean 'models'?" in done.stderr
    assert "loaded: []" in done.stdout, done.stdout + done.stderr
