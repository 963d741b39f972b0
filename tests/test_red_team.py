"""What an outside red team broke, attacked again: images that are PostScript, predict's
inputs reaching files they should not, concurrent and killed sorts, formulas in CSV cells,
huge images, and escape codes in file names. Each test failed on the code before its fix."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionbench
from conftest import edit_document, make_class_folders, pattern
from visionbench.cli import main
from visionbench.errors import UserError

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
       b"(=cmd|' /C calc'!A0) print\nshowpage\n%%EOF\n")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_postscript_named_as_an_image_never_reaches_ghostscript(pets_run, tmp_path,
                                                                 fake_ghostscript, capsys):
    from visionbench.data.decode import decode_item
    from visionbench.schemas.data import PreprocessConfig

    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("scan.png", "scan.jpg", "scan.tif"):
        (folder / name).write_bytes(EPS)
    # The attack is real here: Pillow left to itself hands the file to Ghostscript.
    with pytest.raises(OSError), Image.open(folder / "scan.png") as opened:
        opened.load()
    assert fake_ghostscript.exists()
    fake_ghostscript.unlink()

    assert main(["predict", str(pets_run), str(folder)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 3
    assert all("not an image in a format visionbench reads" in r["error"] for r in rows)
    with pytest.raises(UserError, match="not an image in a format"):
        decode_item(folder / "scan.jpg", PreprocessConfig(size=16))
    # What the app does with a dropped file: decoded from memory.
    with pytest.raises(UserError, match="not an image in a format"):
        visionbench.load(pets_run).decode(io.BytesIO(EPS))
    assert not fake_ghostscript.exists(), "Ghostscript ran"


def test_an_image_declaring_too_many_pixels_is_refused_before_it_is_decoded(tmp_path):
    from visionbench import rasters

    huge = tmp_path / "huge.png"
    # 169 million pixels in a few hundred kB: 1.35 GB once decoded.
    Image.new("1", (13000, 13000)).save(huge)
    with pytest.raises(UserError, match="over the limit"):
        rasters.open_raster(huge, threads=2)
    # The limit and the threads come from one memory budget.
    budget = rasters.decode_budget()
    assert rasters.pixel_limit(2) * rasters.BYTES_PER_PIXEL <= max(
        budget // 2, rasters.PIXEL_FLOOR * rasters.BYTES_PER_PIXEL)
    threads = rasters.decode_threads(64)
    assert threads == 1 or threads * rasters.PIXEL_FLOOR * rasters.BYTES_PER_PIXEL <= budget


@pytest.mark.slow
def test_predict_reads_only_regular_files_and_a_csv_stays_in_its_folder(pets_run, tmp_path,
                                                                             capsys):
    secret = tmp_path / "victim" / "thesis.png"
    secret.parent.mkdir()
    pattern(0, 1).save(secret)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pattern(1, 2).save(inbox / "good.png")
    (inbox / "link.png").symlink_to(secret)
    (inbox / "dangling.png").symlink_to(tmp_path / "missing.png")
    (inbox / "loop.png").symlink_to(inbox / "loop.png")
    os.mkfifo(inbox / "fifo.png")
    listing = inbox / "list.csv"
    listing.write_text("path\ngood.png\n../victim/thesis.png\n")
    assert main(["predict", str(pets_run), str(listing)]) == 2
    assert "leads outside the CSV's folder" in capsys.readouterr().err
    assert main(["predict", str(pets_run), str(listing), "--allow-outside"]) == 0
    assert len(_rows(capsys.readouterr().out)) == 2

    # A FIFO or /dev/zero is never opened (either would hang or fill the disk): run in
    # another process with a time limit, so a regression fails instead of hanging.
    command = [sys.executable, "-m", "visionbench", "predict", str(pets_run), str(inbox),
               "/dev/zero", str(inbox / "fifo.png"), "--sort-into", str(tmp_path / "sorted")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {Path(r["path"]).name: r for r in _rows(done.stdout)}
    assert rows["good.png"]["predicted"] in ("cat", "dog")
    assert "symbolic link, not followed" in rows["link.png"]["error"]
    assert "broken or looping link" in rows["dangling.png"]["error"]
    assert "broken or looping link" in rows["loop.png"]["error"]
    assert "not a regular file" in rows["zero"]["error"]
    assert "not a regular file" in rows["fifo.png"]["error"]
    placed = [p for p in (tmp_path / "sorted").rglob("*") if p.is_file()
              and p.name != "manifest.csv"]
    assert [p.name for p in placed] == ["good.png"], "only the regular file is copied"
    manifest = _rows((tmp_path / "sorted" / "manifest.csv").read_text())
    skipped = {Path(r["source"]).name: r["skipped"] for r in manifest if r["skipped"]}
    # The CSV in the folder is no image: listed as skipped too, left where it is.
    assert set(skipped) == {"link.png", "dangling.png", "loop.png", "zero", "fifo.png",
                            "list.csv"}
    assert "not an image file (.csv): skipped" in rows["list.csv"]["error"]
    assert "left where they are" in done.stderr
    assert secret.is_file() and (inbox / "link.png").is_symlink()


def test_a_class_folder_that_is_a_link_is_refused_before_anything_moves(pets_run, tmp_path,
                                                                         capsys):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "sorted"
    elsewhere.mkdir()
    out.mkdir()
    for name in ("cat", "dog", "_uncertain"):
        (out / name).symlink_to(elsewhere, target_is_directory=True)
    scans = make_class_folders(tmp_path / "scans", {"cat": 2, "dog": 2}, offset=300)
    assert main(["predict", str(pets_run), str(scans), "--sort-into", str(out), "--move"]) == 2
    assert "is a link: remove it" in capsys.readouterr().err
    assert not any(elsewhere.iterdir())
    assert len(list(scans.rglob("*.png"))) == 4


def test_the_same_file_named_twice_is_predicted_and_moved_once(pets_run, tmp_path, capsys,
                                                               monkeypatch):
    scans = make_class_folders(tmp_path / "scans", {"cat": 3}, offset=400)
    one = scans / "cat" / "img 0.png"
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(pets_run), str(one), str(Path("scans/cat/img 0.png")),
                 str(scans / "cat" / "." / "img 0.png"), str(scans),
                 "--sort-into", str(tmp_path / "out"), "--move"]) == 0
    assert len(_rows(capsys.readouterr().out)) == 3
    assert len(_rows((tmp_path / "out" / "manifest.csv").read_text())) == 3
    assert not list(scans.rglob("*.png"))


def _same_named_batches(root: Path, batches: int, files: int) -> list[Path]:
    """`batches` folders holding files of the same names and different contents."""
    folders = []
    for batch in range(batches):
        folder = root / f"batch{batch}"
        folder.mkdir(parents=True)
        for index in range(files):
            pattern(index % 2, 1000 * batch + index).save(folder / f"scan {index}.png")
        folders.append(folder)
    return folders


def _contents(paths: list[Path]) -> list[bytes]:
    return sorted(p.read_bytes() for p in paths)


@pytest.mark.slow
def test_two_sorts_into_one_folder_at_once_lose_nothing(pets_run, tmp_path):
    batches = _same_named_batches(tmp_path / "in", 2, 40)
    before = _contents([p for b in batches for p in b.iterdir()])
    out = tmp_path / "sorted"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "visionbench", "predict", str(pets_run), str(batch),
         "--sort-into", str(out), "--move", "--margin", "0"], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for batch in batches]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    placed = [p for p in out.rglob("*.png")]
    assert _contents(placed) == before, "every file once, none overwritten"
    manifests = list(out.glob("manifest*.csv"))
    assert len(manifests) == 2
    rows = [r for m in manifests for r in _rows(m.read_text())]
    assert sorted(r["destination"] for r in rows) == sorted(str(p) for p in placed)
    assert not list(out.rglob(".sorting-*")) and not list(out.glob(".sort-*.journal"))


def test_formulas_in_names_reach_no_spreadsheet_as_formulas(tmp_path, monkeypatch):
    from visionbench.csvcells import is_number, unescape
    from visionbench.predict.sort import sort_files
    from visionbench.predict.stream import Prediction, RowWriter
    from visionbench.rundir.predictions import Predictions, read_predictions, write_predictions

    classes = ["=HYPERLINK(\"http://x\",\"ok\")", "+1", "-2+3", "@SUM(A1)", "\tx", "'q"]
    names = ["=cmd|' -C calc'!A0.png", "@x.png", "+y.png", "-z.png", "-1.5"]
    probabilities = {name: 1 / len(classes) for name in classes}
    found = []
    for name in names:
        (tmp_path / name).write_bytes(b"not read")
        found.append(Prediction(source=name, predicted=classes[0], probabilities=probabilities,
                                uncertain=False))
    monkeypatch.chdir(tmp_path)

    class Model:
        positive, conformal, unfamiliar = [], None, None

    Model.classes = classes
    buffer = io.StringIO()
    writer = RowWriter(buffer, Model(), as_json=False)
    for prediction in found:
        writer.write(prediction)
    _, manifest = sort_files(found, tmp_path / "sorted", classes)
    written = predictions_file = tmp_path / "predictions.csv"
    write_predictions(predictions_file, Predictions(
        names, np.arange(len(names)) % len(classes), np.full((len(names), len(classes)),
                                                             1 / len(classes))), classes)
    for text in (buffer.getvalue(), manifest.read_text(), written.read_text()):
        cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
        dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert all(is_number(c) for c in dangerous), dangerous
    # predictions.csv reads back exactly what was written.
    back = read_predictions(predictions_file, classes)
    assert back.ids == names
    assert unescape("'=x") == "=x"



def test_file_names_with_terminal_escapes_are_printed_escaped(pets_run, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    pattern(0, 5).save(folder / "scan\x1b]0;owned\x07\x1b[2J.png")
    assert main(["predict", str(pets_run), str(folder), "--sort-into", str(tmp_path / "s"),
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;owned" in err


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "received"
    shutil.copytree(run, folder, symlinks=True)
    return folder


def test_a_received_run_folder_with_links_inside_is_refused_by_every_reader(
        pets_run, tmp_path, capsys):
    from visionbench.app.launch import write_launch_folder

    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    folder = _copy(pets_run, tmp_path)
    (folder / "mlp" / "misclassified.png").unlink(missing_ok=True)
    (folder / "mlp" / "misclassified.png").symlink_to(secret)
    for command in (["report", str(folder)], ["evaluate", str(folder)],
                    ["predict", str(folder), str(secret)],
                    ["explain", str(folder), "--model", "mlp"],
                    ["export", str(folder), "--model", "mlp"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "holds symbolic links" in err and "mlp/misclassified.png" in err, command
    with pytest.raises(UserError, match="holds symbolic links"):
        write_launch_folder(folder, None, tmp_path / "launch")
    # A model folder that is a link would make evaluate write elsewhere.
    other = _copy(pets_run, tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    (other / "mlp").rename(elsewhere)
    (other / "mlp").symlink_to(elsewhere, target_is_directory=True)
    assert main(["evaluate", str(other)]) == 2
    assert "never writes: mlp;" in capsys.readouterr().err


def test_the_app_serves_a_report_it_built_itself_not_the_one_it_received(pets_run, tmp_path):
    from visionbench.app.launch import STATIC, write_launch_folder

    folder = _copy(pets_run, tmp_path)
    (folder / "report.html").write_text("<script>fetch('/_stcore/stream')</script>")
    launch = tmp_path / "launch"
    launch.mkdir()
    write_launch_folder(folder, None, launch)
    served = (launch / STATIC / "report.html").read_text()
    assert "fetch('/_stcore" not in served and "visionbench report" in served


def test_values_an_edited_run_folder_feeds_into_computation_are_checked(pets_run, tmp_path):
    from visionbench.predict import predict_files

    images = make_class_folders(tmp_path / "new", {"cat": 2}, offset=900)
    files = sorted(images.rglob("*.png"))
    cases = {
        "data.json": (lambda d: d.update(image_shape=[40000, 40000, 3]), "image_shape"),
        "mlp/model.json": (lambda d: d["input"].update(std=[0.0]), "std must be positive"),
        "mlp/evaluation.json": (lambda d: d.update(temperature={
            "value": 0.0, "fitted_on": "validation", "validation_images": 4,
            "validation_nll": {"before": 1.0, "after": 1.0}, "test": {},
            "reliability": {"bins": []}}), "temperature.value: Input should be greater than 0"),
    }
    for name, (change, message) in cases.items():
        folder = _copy(pets_run, tmp_path / name.replace("/", "_"))
        edit_document(folder / name, change)
        with pytest.raises(UserError, match=message):
            list(predict_files(visionbench.load(folder, model="mlp"), files))
    # Probabilities that come out NaN (weights edited to NaN) are an error, never a class.
    model = visionbench.load(pets_run, model="mlp")
    model.read = lambda pictures: (np.full((len(pictures), 2), np.nan), None)
    found = list(predict_files(model, files))
    assert all(p.predicted is None and "no finite probabilities" in p.error for p in found)


def test_a_document_nested_too_deep_is_a_one_line_error(pets_run, tmp_path, capsys):
    folder = _copy(pets_run, tmp_path)
    (folder / "leaderboard.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "nested too deep" in err and "Traceback" not in err
