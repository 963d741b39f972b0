"""Provenance reads git state without letting a repository's config run anything."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from visionbench.provenance import collect, head_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_hostile_repository_config_runs_nothing(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "file.txt").write_text("x")
    _git(repo, "add", "file.txt")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout.strip()
    planted = tmp_path / "pwned"
    # git status would run this program (fsmonitor), as would other config keys.
    _git(repo, "config", "core.fsmonitor", f"touch {planted}; false")
    monkeypatch.chdir(repo)
    provenance = collect(["visionbench", "run"])
    assert not planted.exists()
    assert provenance.git["project_commit"] == commit == head_commit(repo)
    assert provenance.git["project_dirty"] is None


def test_head_commit_follows_packed_refs(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "packed-refs").write_text("# pack-refs\n" + "ab" * 20 + " refs/heads/main\n")
    (repo / "sub").mkdir()
    assert head_commit(repo / "sub") == "ab" * 20


def test_a_commit_made_while_a_run_trains_is_not_credited_with_its_models(monkeypatch):
    """The run saves its provenance first; a model finishing after a new commit still names
    the source the process loaded."""
    from visionbench import provenance

    heads = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(provenance, "git_state", lambda _, own_tree=False: {
        "commit": next(heads) if own_tree else "project", "dirty": False})
    provenance.loaded_source.cache_clear()
    try:
        started = provenance.collect(["visionbench", "run"])
        assert started.git["visionbench_commit"] == "aaaa"
        assert provenance.code_version()["commit"] == "aaaa"
    finally:
        provenance.loaded_source.cache_clear()
