"""Writes are atomic, and a full disk is a one-line answer that loses nothing."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from visionbench.errors import UserError
from visionbench.fileio import write_json


def test_a_full_disk_is_one_line_and_the_earlier_file_stays_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"accuracy": 0.9})
    real = Path.write_text

    def full(self, *args, **kwargs):
        real(self, "{\"accura", encoding="utf-8")  # a part landed, then the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match=f"no space left on the device to write {path}"):
        write_json(path, {"accuracy": 0.95})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"accuracy": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_the_decode_cache_says_how_much_space_it_needs(tmp_path, monkeypatch, class_folder):
    import os

    from visionbench.config import config_from_dict
    from visionbench.data.dataset import prepare_data

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room, raising=False)
    config = config_from_dict({"data": {"source": "folder", "path": str(class_folder),
                                        "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(UserError, match=r"no space left for the decode cache in .*MB needed"):
        prepare_data(config.data)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []
