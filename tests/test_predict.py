"""`visionbench predict` and `visionbench.load`: a run's model applied to new images, with
the run's own preprocessing, readings chosen on validation, and files sorted by class."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionbench
from conftest import make_class_folders, pattern, run_yaml
from visionbench.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of two small models on three synthetic classes."""
    root = tmp_path_factory.mktemp("predict")
    data = make_class_folders(root / "data", {"cat": 14, "dog": 14, "fox": 14})
    return run_yaml(root, "animals", f"""
data: {{source: folder, path: {data}, preprocess: {{size: 16}}}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
  mlp: {{preset: mlp}}
train: {{epochs: 8, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0}}
""")


def test_a_run_ends_with_the_commands_that_put_its_model_to_work(run, capsys):
    # The fixture's run printed them; rerun the end of it on the finished folder.
    from visionbench.cli import _next_steps

    _next_steps(run, "cnn")
    err = capsys.readouterr().err
    assert f"open the report:     {(run / 'report.html').resolve().as_uri()}" in err
    assert f"predict new images:  visionbench predict {run} IMAGES_OR_FOLDER" in err


def _new_images(folder: Path) -> Path:
    """Unseen images of each class (24 px, another size than training's 16), a corrupt
    file and a zero-byte one."""
    make_class_folders(folder, {"cat": 2, "dog": 2, "fox": 2}, offset=500)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_predict_reproduces_the_runs_own_test_probabilities(run, capsys):
    # The test images, given by path, must get the probabilities the run wrote for them:
    # the same decode settings, input pipeline and weights, read from the run folder.
    model = json.loads((run / "comparison.json").read_text())["recommended"]
    written = _rows((run / model / "predictions.csv").read_text())
    data_root = run.parents[2] / "data"
    assert main(["predict", str(run), *[str(data_root / r["id"]) for r in written]]) == 0
    found = _rows(capsys.readouterr().out)
    assert [Path(r["path"]).relative_to(data_root).as_posix() for r in found] == [
        r["id"] for r in written]
    for mine, theirs in zip(found, written, strict=True):
        assert mine["predicted"] == theirs["predicted"]
        for name in ("cat", "dog", "fox"):
            assert float(mine[f"prob_{name}"]) == pytest.approx(float(theirs[f"prob_{name}"]),
                                                                abs=1e-5)


def test_a_corrupt_file_is_listed_with_its_reason_and_the_batch_goes_on(run, tmp_path,
                                                                         capsys):
    folder = _new_images(tmp_path / "new")
    assert main(["predict", str(run), str(folder), "--batch-size", "3"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 8
    broken = {Path(r["path"]).name: r for r in rows if r["error"]}
    assert set(broken) == {"broken.png", "empty.jpg"}
    assert all(r["predicted"] == "" and r["prob_cat"] == "" for r in broken.values())
    good = [r for r in rows if not r["error"]]
    assert all(r["predicted"] in ("cat", "dog", "fox") for r in good)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in ("cat", "dog", "fox")) - 1) < 1e-4
               for r in good)
    assert {r["uncertain"] for r in good} <= {"True", "False"}


def test_json_output_to_a_file_and_inputs_by_pattern_and_csv(run, tmp_path):
    folder = _new_images(tmp_path / "new")
    listing = tmp_path / "list.csv"
    listing.write_text("path\nnew/cat/img 0.png\nnew/dog/img 1.png\n")
    out = tmp_path / "predictions.json"
    assert main(["predict", str(run), str(listing), str(folder / "fox" / "*.png"), "--json",
                 "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in found] == ["img 0.png", "img 1.png", "img 0.png",
                                                     "img 1.png"]
    assert set(found[0]) == {"path", "predicted", "prob_cat", "prob_dog", "prob_fox",
                             "uncertain", "unfamiliar", "unfamiliar_score",
                             "duplicate_of_training", "error"}


def test_an_image_that_duplicates_a_training_image_is_flagged(run, tmp_path, capsys):
    import shutil

    data_root = run.parents[2] / "data"
    hashes = json.loads((run / "data" / "training_hashes.json").read_text())
    learned = hashes["ids"][0]
    folder = tmp_path / "new"
    folder.mkdir()
    shutil.copy(data_root / learned, folder / "copy.png")
    with Image.open(data_root / learned) as image:
        image.convert("RGB").resize((30, 30)).save(folder / "resaved.jpg", quality=85)
    pattern(1, 700).save(folder / "unseen.png")
    assert main(["predict", str(run), str(folder)]) == 0
    flags = {Path(r["path"]).name: r["duplicate_of_training"]
             for r in _rows(capsys.readouterr().out)}
    assert flags == {"copy.png": f"exact: {learned}", "resaved.jpg": f"near: {learned}",
                     "unseen.png": ""}


def test_the_python_api_gives_the_numbers_of_the_command_line(run, tmp_path, capsys):
    folder = _new_images(tmp_path / "new")
    files = sorted((folder / "cat").iterdir())
    assert main(["predict", str(run), *map(str, files)]) == 0
    cli = _rows(capsys.readouterr().out)
    model = visionbench.load(run)
    assert model.classes == ["cat", "dog", "fox"] and model.card.input.size == (16, 16)
    image = Image.open(files[1])
    found = model.predict([files[0], image, np.asarray(image)])
    assert [f.predicted for f in found] == [cli[0]["predicted"], cli[1]["predicted"],
                                            cli[1]["predicted"]]
    assert found[0].probabilities["cat"] == pytest.approx(float(cli[0]["prob_cat"]), abs=1e-6)
    assert found[1].probabilities == pytest.approx(found[2].probabilities)
    assert found[1].source == "image 1"


def test_the_uncertainty_margin_is_settable(run, tmp_path, capsys):
    folder = _new_images(tmp_path / "new")
    assert main(["predict", str(run), str(folder / "cat"), "--margin", "1.0"]) == 0
    captured = capsys.readouterr()
    assert {r["uncertain"] for r in _rows(captured.out)} == {"True"}
    assert "uncertain below 1.0 (--margin)" in captured.err


def test_sort_into_places_every_file_once_and_overwrites_nothing(run, tmp_path, capsys):
    folder = _new_images(tmp_path / "scans")
    out = tmp_path / "sorted"
    # A file already where one of ours would land: it must survive, ours gets a suffix.
    model = visionbench.load(run)
    first = model.predict([folder / "cat" / "img 0.png"])[0]
    clash = out / first.predicted / "img 0.png"
    clash.parent.mkdir(parents=True)
    clash.write_bytes(b"keep me")
    assert main(["predict", str(run), str(folder), "--sort-into", str(out), "--dry-run"]) == 0
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["img 0.png"]
    assert "would go to" in capsys.readouterr().err
    assert main(["predict", str(run), str(folder), "--sort-into", str(out)]) == 0
    err = capsys.readouterr().err
    manifest = _rows((out / "manifest.csv").read_text())
    sources = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert sorted(r["source"] for r in manifest) == sources, "every file exactly once"
    destinations = [Path(r["destination"]) for r in manifest]
    assert len(set(destinations)) == len(destinations) and all(d.is_file() for d in destinations)
    assert clash.read_bytes() == b"keep me"
    assert {r["folder"] for r in manifest if r["error"]} == {"_unreadable"}
    assert "_unreadable" in err and "manifest:" in err
    # Moving empties the source folder; the earlier copies are not overwritten.
    assert main(["predict", str(run), str(folder), "--sort-into", str(out), "--move"]) == 0
    assert not [p for p in folder.rglob("*") if p.is_file()]
    assert (out / "manifest-1.csv").is_file()
    assert len([p for p in out.rglob("*") if p.is_file() and p.suffix != ".csv"]) == 17


def test_predict_mistakes_are_one_line_answers(run, tmp_path, capsys):
    assert main(["predict", str(run), str(tmp_path / "nothing-here")]) == 2
    assert main(["predict", str(run), str(tmp_path), "--model", "nope"]) == 2
    assert main(["predict", str(run), str(tmp_path), "--move"]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "--move and --dry-run go with --sort-into" in err
    assert "Traceback" not in err


def test_a_class_name_cannot_send_a_file_out_of_the_sort_folder(tmp_path):
    from visionbench.predict.sort import plan_sort
    from visionbench.predict.stream import Prediction

    (tmp_path / "a.png").write_bytes(b"x")
    found = plan_sort([Prediction(source=str(tmp_path / "a.png"), predicted="../../etc",
                                  probabilities={"../../etc": 1.0}, uncertain=False)],
                      Path("/out"))
    assert found[0].destination == Path("/out/etc/a.png")


def test_pattern_is_a_distinct_image():
    # The new images of the tests are not the training ones.
    assert not np.array_equal(np.asarray(pattern(0, 500)), np.asarray(pattern(0, 0)))


def test_a_near_copy_is_reported_by_hash_only_when_the_training_image_is_gone():
    from visionbench.data.decode import ImageFacts
    from visionbench.predict.training import TrainingIndex
    from visionbench.rundir import TrainingHashes

    hashes = TrainingHashes(ids=["train/7"], exact=["aa"], phash=[f"{0b1011:016x}"],
                            near_threshold=4, near_similarity=0.97)
    facts = ImageFacts(width=8, height=8, mode="L", format="PNG", exact_hash="bb",
                       phash=0b1001)
    pixels = np.zeros((8, 8, 1), np.uint8)
    assert TrainingIndex(hashes, lambda _: None).match(pixels, facts) == (
        "near by hash only (the training image is not here to compare): train/7")
    exact = ImageFacts(width=8, height=8, mode="L", format="PNG", exact_hash="aa", phash=0)
    assert TrainingIndex(hashes, lambda _: None).match(pixels, exact) == "exact: train/7"
    other = np.full((8, 8, 1), 255, np.uint8)
    other[::2] = 0
    assert TrainingIndex(hashes, lambda _: other).match(pixels + np.arange(8, dtype=np.uint8)[
        :, None, None], facts) is None, "pixels that do not agree are not a duplicate"


def test_a_training_id_cannot_point_outside_the_data_folder(tmp_path):
    from visionbench.predict.training import training_file

    (tmp_path / "data").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    assert training_file(tmp_path / "data", "../secret.png") is None
    assert training_file(None, "a.png") is None


@pytest.mark.slow
def test_load_works_in_a_fresh_python_as_a_notebook_would(run, tmp_path):
    import subprocess
    import sys

    image = tmp_path / "new.png"
    pattern(2, 900).save(image)
    program = ("import sys, visionbench\n"
               "model = visionbench.load(sys.argv[1])\n"
               "found = model.predict([sys.argv[2]])[0]\n"
               "print(model.name, found.predicted, round(sum(found.probabilities.values()), 4))")
    done = subprocess.run([sys.executable, "-c", program, str(run), str(image)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    name, predicted, total = done.stdout.split()
    assert name == json.loads((run / "comparison.json").read_text())["recommended"]
    assert predicted in ("cat", "dog", "fox") and total == "1.0"


@pytest.mark.slow
def test_the_photo_filter_sorts_a_scanners_output(tmp_path, capsys):
    """The scanning company's job end to end: the photo-filter recipe on its five kinds of
    scans, then new scans sorted into photo / not_photo folders."""
    import shutil

    from visionbench.config import load_config
    from visionbench.orchestrate import run_config

    scans = make_class_folders(tmp_path / "scans", {
        "Photo": 10, "Painting": 14, "Schematics": 14, "Sketch": 14, "Text": 14})
    config = load_config("photo_filter", [
        f"data.path={scans}", "data.preprocess.size=32", "train.epochs=1",
        "train.progress=quiet", "evaluate.bootstrap=0", "evaluate.robustness={}",
        "evaluate.explain.images=0", "evaluate.error_examples=0",
        f"output.dir={tmp_path / 'runs'}"])
    run = run_config(config, report=lambda _: None).folder
    incoming = make_class_folders(tmp_path / "incoming", {"Photo": 3, "Text": 3}, offset=300)
    learned = json.loads((run / "data" / "training_hashes.json").read_text())["ids"][0]
    shutil.copy(scans / learned, incoming / "rescanned.png")
    (incoming / "jammed.jpg").write_bytes(b"\xff\xd8\xff\xe0 torn")
    before = sorted(p for p in incoming.rglob("*") if p.is_file())
    out = tmp_path / "sorted"
    assert main(["predict", str(run), str(incoming), "--sort-into", str(out)]) == 0
    err = capsys.readouterr().err
    manifest = _rows((out / "manifest.csv").read_text())
    assert sorted(Path(r["source"]) for r in manifest) == before
    landed = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.csv")
    assert len(landed) == len(before) and len({p.name for p in landed}) >= 4
    folders = {r["folder"] for r in manifest}
    assert folders <= {"photo", "not_photo", "_unfamiliar", "_uncertain", "_unreadable"}
    assert [r["folder"] for r in manifest if r["source"].endswith("jammed.jpg")] == [
        "_unreadable"]
    rescanned = next(r for r in manifest if r["source"].endswith("rescanned.png"))
    assert rescanned["duplicate_of_training"] == f"exact: {learned}"
    for folder in folders:
        assert f"to {out / folder}" in err


def test_explain_gives_a_map_over_the_image_as_the_model_sees_it(run, tmp_path):
    image = tmp_path / "new.png"
    pattern(0, 800, size=40).save(image)
    model = visionbench.load(run)
    found = model.explain(image)
    assert found.method == "gradcam" and found.faithful is None  # the run made no maps
    assert found.target == model.predict([image])[0].predicted
    assert found.map.shape == (16, 16) and found.image.shape == (16, 16, 3)
    assert found.map.min() >= 0 and found.map.max() == pytest.approx(1.0)
    other = model.explain(image, method="occlusion", target="fox")
    assert other.method == "occlusion" and other.target == "fox"
    # Drawn over the image: red where the map is 1, blue where it is 0, the image between.
    drawn = found.overlay()
    assert drawn.shape == (16, 16, 3) and drawn.dtype == np.uint8
    heat = (drawn - 0.55 * found.image.astype(float)) / 0.45
    hot = np.unravel_index(found.map.argmax(), (16, 16))
    cold = np.unravel_index(found.map.argmin(), (16, 16))
    assert heat[hot][0] > heat[hot][2] + 100 and heat[cold][2] > heat[cold][0] + 100
    assert np.array_equal(found.overlay(opacity=0.0), found.image)
