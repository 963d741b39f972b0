"""A folder of hostile and broken inputs goes through inspect, run, report and explain
without a traceback, and every file left out is listed with its reason."""

from __future__ import annotations

import json
import os

from PIL import Image

from conftest import make_class_folders
from visionbench.cli import main


def _hostile_folder(root):
    make_class_folders(root, {"a [/]red": 10, "b ünï cödé": 10})
    good, other = root / "a [/]red", root / "b ünï cödé"
    (good / "zero.png").write_bytes(b"")
    (good / "truncated.png").write_bytes((good / "img 0.png").read_bytes()[:60])
    (good / "text.png").write_text("not an image at all")
    Image.open(good / "img 1.png").save(good / "really a png.jpg", "PNG")  # wrong extension
    # 196 million pixels in 24 kB: above Pillow's decompression-bomb limit.
    Image.new("1", (14000, 14000)).save(other / "huge.png")
    (other / "loop").symlink_to(other)
    (other / "dangling.png").symlink_to(root / "missing.png")
    with open(os.fsencode(str(other)) + b"/caf\xe9.png", "wb") as handle:
        handle.write((other / "img 0.png").read_bytes())
    (root / "README.txt").write_text("a stray file at the top")
    return root


def test_hostile_inputs_pass_through_every_command(tmp_path, capsys):
    data = _hostile_folder(tmp_path / "data")
    out = tmp_path / "runs"
    common = ["--set", f"data.path={data}", "--set", f"output.dir={out}", "--set",
              "data.preprocess.size=16", "--set", "train.epochs=1", "--set",
              "train.progress=quiet", "--set", "evaluate.bootstrap=20", "--set",
              "evaluate.explain.images=2", "--set", "evaluate.explain.steps=2", "--set",
              "evaluate.explain.samples=2", "--set", "evaluate.robustness={noise: [0.1]}",
              "--set", "data.split.val=0.25", "--set", "data.split.test=0.25"]
    config = tmp_path / "hostile.yaml"
    config.write_text("data: {source: folder, path: x}\nmodels: {cnn: {preset: mnist_baseline},"
                      " mlp: {preset: mlp}}\n")
    assert main(["inspect", str(config), *common, "--json", "--out",
                 str(tmp_path / "inspected")]) == 0
    captured = capsys.readouterr()
    inspected = json.loads(captured.out)
    assert "Traceback" not in captured.err
    failures = inspected["failures"]
    assert {"a [/]red/zero.png", "a [/]red/truncated.png", "a [/]red/text.png",
            "b ünï cödé/huge.png"} <= set(failures)
    assert "over the limit for decoding" in failures["b ünï cödé/huge.png"]
    assert sorted(inspected["ignored_files"]["files"]) == [
        "README.txt", "b ünï cödé/caf\\xe9.png (file name is not valid UTF-8: rename it)",
        "b ünï cödé/dangling.png (a broken or looping link)",
        "b ünï cödé/loop (a linked folder, not followed)"]

    assert main(["run", str(config), *common]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "8 file(s) skipped" in err
    folder = next((out / "hostile").iterdir())
    report = (folder / "report.html").read_text()
    assert "Skipped files (8)" in report and "over the limit for decoding" in report
    assert main(["report", str(folder)]) == 0
    assert main(["explain", str(folder), "--model", "cnn"]) == 0
    assert main(["explain", str(folder), "--model", "cnn", "--images",
                 str(data / "a [/]red" / "zero.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "Traceback" not in err
    assert main(["evaluate", str(folder)]) == 0
