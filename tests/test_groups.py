"""`split.group_by`: images of one patient stay in one split and one fold, whether the
group comes from a pattern in the file names or from a CSV column; a source whose given
splits already mix a patient says so; mistakes are one-line errors."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import pattern
from visionbench.cli import main
from visionbench.config import config_from_dict
from visionbench.data.dataset import prepare_data
from visionbench.errors import UserError


def _patients(root: Path, patients: int = 24, per_patient: int = 3) -> Path:
    """`root/<class>/person<p>_<i>.png`: each patient has `per_patient` distinct images of
    one class (every fourth patient is sick)."""
    for p in range(patients):
        label = "sick" if p % 4 == 0 else "well"
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_patient):
            pattern(int(label == "sick"), 10 * p + i).save(folder / f"person{p}_{i}.png")
    return root


def _data(**data):
    return prepare_data(config_from_dict({"data": {"preprocess": {"size": 12}, **data}}).data)


def _patient_splits(data) -> dict[str, set[str]]:
    found = defaultdict(set)
    for image_id, split in zip(data.ids, data.split.tolist(), strict=True):
        found[Path(image_id).name.split("_")[0]].add(split)
    return found


def test_a_patients_images_stay_in_one_split_and_without_grouping_they_do_not(tmp_path):
    root = _patients(tmp_path / "scans")
    split = {"val": 0.3, "test": 0.3, "seed": 3}
    # Duplicate search would not link these distinct images: only the patient does.
    plain = _data(source="folder", path=str(root), split=split)
    assert any(len(splits) > 1 for splits in _patient_splits(plain).values())
    grouped = _data(source="folder", path=str(root),
                    split={**split, "group_by": r"person(\d+)_"})
    assert all(len(splits) == 1 for splits in _patient_splits(grouped).values())
    assert set(grouped.split.tolist()) == {"train", "val", "test"}
    summary = grouped.record.groups
    assert summary.groups == 24 and summary.groups_of_several == 24
    assert summary.without_group == 0 and summary.straddling.groups == 0
    assert not [w for w in grouped.record.warnings if w.code == "groups_straddle_splits"]


def test_folds_keep_a_patient_whole(tmp_path):
    root = _patients(tmp_path / "scans", patients=30)
    data = _data(source="folder", path=str(root),
                 split={"folds": 3, "test": 0.2, "group_by": {"pattern": r"person\d+"}})
    folds = defaultdict(set)
    for image_id, fold in zip(data.ids, data.fold.tolist(), strict=True):
        folds[Path(image_id).name.split("_")[0]].add(fold)
    assert all(len(found) == 1 for found in folds.values())


def test_a_given_split_that_mixes_a_patient_is_reported(tmp_path):
    root = tmp_path / "xray"
    _patients(root / "train", patients=12)
    # Patient 4 also has images in the given test split, as in the chest X-ray data.
    (root / "test" / "sick").mkdir(parents=True)
    (root / "test" / "well").mkdir(parents=True)
    pattern(1, 900).save(root / "test" / "sick" / "person4_9.png")
    pattern(0, 901).save(root / "test" / "well" / "person99_0.png")
    pattern(1, 902).save(root / "test" / "sick" / "person98_0.png")
    data = _data(source="presplit", path=str(root), split={"val": 0.25, "group_by": "person\\d+"})
    straddling = data.record.groups.straddling
    assert straddling.model_dump() == {"groups": 1, "splits": {"test + train": 1},
                                       "examples": ["person4"]}
    warning = next(w for w in data.record.warnings if w.code == "groups_straddle_splits")
    assert warning.data == straddling.model_dump()
    assert "1 group(s) by pattern 'person\\d+' in the image ids" in warning.message
    assert "1 in test + train; e.g. person4" in warning.message


def test_groups_from_a_csv_column(tmp_path):
    root = _patients(tmp_path / "scans")
    lines = ["path,label,patient"]
    for file in sorted(root.rglob("*.png")):
        lines.append(f"{file.relative_to(root)},{file.parent.name},"
                     f"P-{file.name.split('_')[0].removeprefix('person')}")
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    data = _data(source="csv", path=str(root / "list.csv"),
                 split={"val": 0.3, "test": 0.3, "seed": 5, "group_by": {"column": "patient"}})
    assert all(len(splits) == 1 for splits in _patient_splits(data).values())
    assert data.record.groups.by == "CSV column 'patient'"
    with pytest.raises(UserError, match=re.escape(
            "'ward' is not a column of manifest list.csv; its columns: patient")):
        _data(source="csv", path=str(root / "list.csv"), split={"group_by": {"column": "ward"}})
    with pytest.raises(UserError, match="only a csv source has columns"):
        _data(source="folder", path=str(root), split={"group_by": {"column": "patient"}})


def test_a_bad_group_by_is_refused_when_the_config_loads():
    for wrong, message in (({"pattern": "person(\\d+"}, "is not a regular expression"),
                           ({}, "give one of pattern"),
                           ({"pattern": "x", "column": "y"}, "give one of pattern")):
        with pytest.raises((ValidationError, UserError), match=message):
            config_from_dict({"data": {"source": "digits", "split": {"group_by": wrong}}})


def test_inspect_says_how_the_groups_were_kept(tmp_path, capsys):
    root = _patients(tmp_path / "scans")
    config = tmp_path / "scans.yaml"
    config.write_text(f"data: {{source: folder, path: {root}, preprocess: {{size: 12}},\n"
                      f"       split: {{group_by: 'person(\\d+)_'}}}}\n")
    assert main(["inspect", str(config), "--out", str(tmp_path / "out")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("Groups by pattern 'person(\\d+)_' in the image ids: 24 (24 of several images; "
            "0 image(s) in none) stay whole in every split made here.") in out
