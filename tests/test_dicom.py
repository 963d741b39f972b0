"""DICOM: the reader (rescale, windows, MONOCHROME1, frames, compressed syntaxes, refusals),
folders of DICOM files (extensionless ones too), grouping by an attribute, inspect's
attributes per split, and a missing extra refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dicom_files import pydicom, shipped, write_dicom
from visionbench.cli import main
from visionbench.data.decode import preprocess, window_levels
from visionbench.errors import UserError
from visionbench.readers import EXTENSIONS, READERS, read_raster, reader_for
from visionbench.schemas.data import FixedWindow, GroupBy, PercentileWindow, PreprocessConfig

GREY = PreprocessConfig(color="grayscale")


def _hounsfield(name: str) -> np.ndarray:
    dataset = pydicom.dcmread(shipped(name))
    return (dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope)
            + float(dataset.RescaleIntercept))


def test_dicom_extensions_come_from_the_reader_registry():
    assert {".dcm", ".dicom", ".png", ".jpg"} <= EXTENSIONS
    assert reader_for(shipped("CT_small.dcm")) is READERS.get("dicom")


def test_ct_values_are_rescaled_and_stretched_over_their_range_without_a_window():
    hounsfield = _hounsfield("CT_small.dcm")
    with read_raster(shipped("CT_small.dcm")) as raster:
        assert raster.format == "DICOM" and raster.window is None
        assert raster.image.mode == "F"
        np.testing.assert_allclose(np.asarray(raster.image), hounsfield)
        pixels, facts = preprocess(raster, GREY)
    low, high = hounsfield.min(), hounsfield.max()
    expected = np.rint((hounsfield - low) * 255.0 / (high - low)).astype(np.uint8)
    np.testing.assert_array_equal(pixels[..., 0], expected)
    assert facts.format == "DICOM" and facts.mode == "MONOCHROME2 16-bit"


def test_the_files_own_window_a_fixed_window_and_percentiles():
    dataset = pydicom.dcmread(shipped("MR_small.dcm"))
    values = dataset.pixel_array.astype(np.float64)
    with read_raster(shipped("MR_small.dcm")) as raster:
        assert raster.window == (600.0, 1600.0)
        auto = preprocess(raster, GREY)[0][..., 0]
        fixed = preprocess(raster, GREY.model_copy(
            update={"window": FixedWindow(center=300, width=200)}))[0][..., 0]
        ranged = preprocess(raster, GREY.model_copy(update={"window": "range"}))[0][..., 0]
        stretched = preprocess(raster, GREY.model_copy(
            update={"window": PercentileWindow(percentiles=(5, 95))}))[0][..., 0]
    np.testing.assert_array_equal(auto, np.rint(window_levels(values, 600, 1600)))
    np.testing.assert_array_equal(fixed, np.rint(window_levels(values, 300, 200)))
    # DICOM's linear window: the centre maps to the middle, the edges to 0 and 255.
    assert window_levels(np.array([300 - 100.0, 300.0, 400.0]), 300, 200).round().tolist() \
        == [0.0, 128.0, 255.0]
    assert ranged.min() == 0 and ranged.max() == 255
    low, high = np.percentile(values, (5, 95))
    assert (stretched == 0).mean() == pytest.approx((values <= low).mean(), abs=0.01)
    assert (stretched == 255).mean() == pytest.approx((values >= high).mean(), abs=0.01)


def test_a_file_without_a_window_is_refused_when_the_rule_is_file():
    settings = GREY.model_copy(update={"window": "file"})
    with read_raster(shipped("CT_small.dcm")) as raster, pytest.raises(UserError,
                                                                      match="gives no window"):
        preprocess(raster, settings)


def test_monochrome1_is_shown_inverted(tmp_path):
    values = np.tile(np.arange(0, 4000, 125, dtype=np.uint16), (32, 1))
    plain = write_dicom(tmp_path / "plain.dcm", values, window=(2000, 4000))
    inverted = write_dicom(tmp_path / "inverted.dcm", values, photometric="MONOCHROME1",
                           window=(2000, 4000))
    with read_raster(plain) as first, read_raster(inverted) as second:
        assert second.monochrome1 and not first.monochrome1
        shown = preprocess(first, GREY)[0]
        flipped = preprocess(second, GREY)[0]
        kept = preprocess(second, GREY.model_copy(update={"invert_monochrome1": False}))[0]
    np.testing.assert_array_equal(flipped, 255 - shown)
    np.testing.assert_array_equal(kept, shown)
    assert shown[0, 0, 0] < shown[0, -1, 0]  # low values dark in MONOCHROME2


def test_a_multi_frame_file_needs_a_frame(tmp_path):
    frames = np.stack([np.full((16, 16), 100 * (k + 1), np.uint16) for k in range(3)])
    frames[:, :8] = 0
    path = write_dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(UserError, match=r"multi-frame DICOM \(3 frames\): set "
                                        r"data.preprocess.frame"):
        read_raster(path)
    with read_raster(path, frame=2) as raster:
        assert np.asarray(raster.image).max() == 300
    with pytest.raises(UserError, match="past this file's 3 frames"):
        read_raster(path, frame=3)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm"])
def test_lossless_compressed_files_decode_to_the_same_pixels(name):
    pytest.importorskip("pylibjpeg")
    with read_raster(shipped("MR_small.dcm")) as plain, read_raster(shipped(name)) as packed:
        np.testing.assert_array_equal(preprocess(packed, GREY)[0], preprocess(plain, GREY)[0])


def test_a_compressed_file_without_its_decoder_names_the_extra(monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(UserError) as refused:
        read_raster(shipped("MR_small_jp2klossless.dcm"))
    message = str(refused.value)
    assert "JPEG 2000" in message and "visionbench[dicom]" in message and "\n" not in message


@pytest.mark.parametrize(("name", "reason"), [
    ("rtplan.dcm", "without pixel data"),
    ("MR_truncated.dcm", "cannot decode the DICOM pixel data"),
])
def test_dicom_files_that_cannot_be_shown_say_why(name, reason):
    with pytest.raises(UserError, match=reason):
        read_raster(shipped(name))


def test_a_dcm_that_is_not_dicom_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "notes.dcm"
    fake.write_text("not an image")
    with pytest.raises(UserError, match="not a DICOM file"):
        read_raster(fake)
    (tmp_path / "link.dcm").symlink_to(shipped("CT_small.dcm"))
    with pytest.raises(UserError, match="symbolic link"):
        read_raster(tmp_path / "link.dcm", follow_links=False)


def test_colour_dicom_is_read_as_rgb():
    for name in ("SC_rgb_rle.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_palette.dcm"):
        with read_raster(shipped(name)) as raster:
            assert raster.image.mode == "RGB", name
            pixels, _ = preprocess(raster, PreprocessConfig(size=16))
            assert pixels.shape == (16, 16, 3) and pixels.std() > 0, name


def _patients_folder(root, patients=12, per_patient=3):
    """Two classes of generated 16-bit DICOM files, `per_patient` images per patient, the
    patient only in the header, two manufacturers, one file per class without extension."""
    rng = np.random.default_rng(0)
    for number in range(patients):
        label = ("bright", "dark")[number % 2]
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_patient):
            # Smooth random texture (no two images alike: no near duplicates), and a
            # square whose level says the class.
            grid = rng.integers(0, 1500, (4, 4)).astype(np.float64)
            values = np.kron(grid, np.ones((6, 6))).astype(np.uint16)
            top, left = rng.integers(0, 12, 2)
            values[top:top + 10, left:left + 10] += 2500 if label == "bright" else 300
            name = f"img{number:02d}_{k}" + ("" if number < 2 and k == 0 else ".dcm")
            write_dicom(folder / name, values, window=(1500, 3000), patient=f"PAT{number}",
                        manufacturer=("ACME", "OTHER")[number % 3 == 0], intercept=-1024)
    return root


def test_a_folder_of_dicom_files_is_grouped_by_patient_and_inspected(tmp_path, capsys):
    from visionbench.config import load_config
    from visionbench.data.dataset import prepare_data

    data = _patients_folder(tmp_path / "scans")
    settings = ["data.source=folder", f"data.path={data}", "data.preprocess.size=24",
                "data.split.group_by=dicom:PatientID", "data.split.val=0.25",
                "data.split.test=0.25"]
    prepared = prepare_data(load_config("quickstart", settings).data)
    # Every file is read, the two without an extension too; a patient's images (named
    # only in the header) share one split.
    assert len(prepared.ids) == 36
    for number in range(12):
        places = {split for image_id, split in zip(prepared.ids, prepared.split, strict=True)
                  if f"img{number:02d}_" in image_id}
        assert len(places) == 1, (number, places)
    code = main(["inspect", "quickstart", *[part for setting in settings
                                             for part in ("--set", setting)],
                 "--json", "--out", str(tmp_path / "inspect")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["failures"]
    assert report["groups"]["groups"] == 12 and report["groups"]["straddling"]["groups"] == 0
    stats = report["image_stats"]
    assert set(stats["train"]["dicom"]) == {"Manufacturer"}  # the one attribute that varies
    assert sum(stats["train"]["dicom"]["Manufacturer"].values()) == report["totals"]["train"]
    assert stats["train"]["formats"] == {"DICOM": report["totals"]["train"]}


def test_a_missing_dicom_extra_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    data = _patients_folder(tmp_path / "scans", patients=2, per_patient=2)
    monkeypatch.setattr(type(READERS.get("dicom")), "available", lambda self: False)
    code = main(["inspect", "quickstart", "--set", "data.source=folder", "--set",
                 f"data.path={data}", "--set", "data.preprocess.size=24"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'visionbench[dicom]'" in err and "4 file(s)" in err
    # The settings that mean something for DICOM only are refused at config load.
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ValueError, match=r"visionbench\[dicom\]"):
        GroupBy.model_validate("dicom:PatientID")
    for setting in ({"window": "file"}, {"frame": 0}):
        with pytest.raises(ValueError, match=r"visionbench\[dicom\]"):
            PreprocessConfig.model_validate(setting)
    assert PreprocessConfig.model_validate({"window": "range"}).window == "range"


def test_an_unknown_dicom_keyword_is_refused_at_config_load():
    with pytest.raises(ValueError, match="not a DICOM attribute keyword"):
        GroupBy.model_validate("dicom:PatientName2")
    assert GroupBy.model_validate("dicom:PatientID").describe() == "DICOM attribute PatientID"


def test_a_shipped_ct_copy_is_found_in_a_folder_without_extension(tmp_path):
    from visionbench.readers import is_image

    copy = tmp_path / "IM0001"
    shutil.copy(shipped("CT_small.dcm"), copy)
    (tmp_path / "README").write_text("not an image")
    assert is_image(copy) and not is_image(tmp_path / "README")


def _copies_of_shipped_files(root, per_class=12):
    """pydicom's CT_small and MR_small, copied and labelled `ct` and `mr`: each copy turned
    or flipped, shifted and given its own noise and patient; every other MR copy stored
    MONOCHROME1 (its values inverted, as such files store them), one CT copy without an
    extension."""
    rng = np.random.default_rng(1)
    for label, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (root / label).mkdir(parents=True)
        for number in range(per_class):
            dataset = pydicom.dcmread(shipped(name))
            values = dataset.pixel_array.astype(np.int32)
            values = np.rot90(values, number % 4)
            values = values[:, ::-1] if number % 8 >= 4 else values
            values = np.roll(values, int(rng.integers(-8, 9)), axis=int(rng.integers(0, 2)))
            values = values + rng.integers(0, 40, values.shape)
            if label == "mr" and number % 2:
                values = int(values.max()) - values
                dataset.PhotometricInterpretation = "MONOCHROME1"
                dataset.WindowCenter = int(values.max()) - 600
            values = np.clip(values, 0 if dataset.PixelRepresentation == 0 else -32768,
                             32767).astype("<i2" if dataset.PixelRepresentation else "<u2")
            dataset.PixelData = np.ascontiguousarray(values).tobytes()
            dataset.PatientID = f"{label}{number // 2}"
            dataset.SOPInstanceUID = pydicom.uid.generate_uid()
            suffix = "" if (label, number) == ("ct", 0) else ".dcm"
            dataset.save_as(root / label / f"{label}{number:02d}{suffix}")
    return root


@pytest.mark.slow
def test_dicom_goes_through_inspect_run_predict_export_and_the_deploy_program(tmp_path,
                                                                             capsys):
    pytest.importorskip("onnxruntime")
    from conftest import run_yaml
    from test_export import _program

    data = _copies_of_shipped_files(tmp_path / "scans")
    files = sorted(p for p in data.rglob("*") if p.is_file())
    config = f"""
data:
  source: folder
  path: {data}
  preprocess: {{size: 32, color: grayscale}}
  split: {{val: 0.25, test: 0.25, group_by: "dicom:PatientID"}}
  # Copies of two files: their near-duplicate search would join every copy of a class.
  duplicates: {{near: false}}
models:
  cnn: {{layers: [{{type: conv, filters: 8}}, {{type: pool}}, {{type: flatten}}]}}
train: {{epochs: 2, progress: quiet}}
evaluate: {{bootstrap: 0, robustness: {{}}, explain: {{images: 0}}, error_examples: 0,
           shift: null, segments: null}}
"""
    (tmp_path / "check.yaml").write_text(config)
    assert main(["inspect", str(tmp_path / "check.yaml"), "--json", "--out",
                 str(tmp_path / "inspect")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(report["totals"].values()) == 24 and not report["failures"]
    assert report["image_stats"]["train"]["dicom"]["Modality"].keys() <= {"CT", "MR"}
    run = run_yaml(tmp_path, "scans", config)
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, files), "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert not any(row["error"] for row in from_run)
    assert main(["export", str(run), "--model", "cnn", "--out", str(tmp_path / "export")]) == 0
    card = json.loads((tmp_path / "export" / "model.json").read_text())
    assert card["decode"]["window"] == "auto" and card["decode"]["invert_monochrome1"] is True
    program = tmp_path / "predict_onnx.py"
    program.write_text(_program())
    done = subprocess.run([sys.executable, str(program), str(tmp_path / "export"),
                           *map(str, files)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    from_program = [json.loads(line) for line in done.stdout.splitlines()]
    for mine, theirs in zip(from_program, from_run, strict=True):
        assert mine["predicted"] == theirs["predicted"]
        assert np.allclose([mine[f"prob_{c}"] for c in ("ct", "mr")],
                           [theirs[f"prob_{c}"] for c in ("ct", "mr")], atol=1e-5)


def test_the_app_accepts_a_dicom_upload_and_shows_it_through_its_window():
    pytest.importorskip("streamlit")
    from visionbench.app.pages import thumbnail
    from visionbench.app.uploads import UploadLimits, screen_uploads

    accepted, refused = screen_uploads([("scan.dcm", 10_000), ("scan.DICOM", 10)],
                                       UploadLimits())
    assert accepted == [0, 1] and not refused
    shown = thumbnail(shipped("MR_small.dcm").read_bytes(), GREY)
    values = pydicom.dcmread(shipped("MR_small.dcm")).pixel_array.astype(np.float64)
    expected = np.rint(window_levels(values, 600, 1600)).astype(np.uint8)
    assert shown.shape == (64, 64, 3)
    np.testing.assert_array_equal(shown[..., 0], expected)


def test_a_link_is_not_read_to_learn_its_format_when_links_are_not_followed(tmp_path,
                                                                           monkeypatch):
    from visionbench import readers

    (tmp_path / "IM0001").symlink_to(shipped("CT_small.dcm"))
    opened = []
    real = readers._head
    monkeypatch.setattr(readers, "_head", lambda source: opened.append(source) or real(source))
    with pytest.raises(UserError, match="symbolic link"):
        read_raster(tmp_path / "IM0001", follow_links=False)
    assert opened == []
    assert reader_for(tmp_path / "IM0001") is READERS.get("dicom")  # followed when asked
