"""Checks on ../shared/data; skipped where it is absent (a user's fresh machine)."""

import json

import pytest

from conftest import SHARED_DATA
from visionbench.cli import main

BRAIN = SHARED_DATA / "brain_tumor_mri"
pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.skipif(not BRAIN.is_dir(), reason="../shared/data/brain_tumor_mri is absent")
def test_brain_tumor_counts_and_duplicates(tmp_path, capsys):
    code = main(
        [
            "inspect",
            "recipes/brain_tumor.yaml",
            "--set",
            f"data.path={BRAIN}",
            "--set",
            "data.split.val=0",
            "--json",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    # The counts of shared/data/README.md, as the source gave them and (validation disabled)
    # as the split used for training.
    assert report["source_splits"]["train"]["glioma_tumor"] == 826
    assert report["source_splits"]["test"]["no_tumor"] == 105
    assert report["splits"]["train"] == {
        "glioma_tumor": 826,
        "meningioma_tumor": 822,
        "no_tumor": 395,
        "pituitary_tumor": 827,
    }
    assert report["splits"]["test"] == {
        "glioma_tumor": 100,
        "meningioma_tumor": 115,
        "no_tumor": 105,
        "pituitary_tumor": 74,
    }
    across = report["duplicates"]["exact"]["across"]["train~test"]
    assert across["pairs"] > 100 and across["images"] > 100
    assert report["duplicates"]["near"]["across"]["train~test"]["pairs"] > 0
    assert report["image_stats"]["train"]["distinct_sizes"] > 100
    assert report["ignored_files"]["count"] == 1  # SHA256SUMS


@pytest.mark.skipif(
    not (SHARED_DATA / "mnist_t10k").is_dir(), reason="../shared/data/mnist_t10k is absent"
)
def test_mnist_idx_pool_is_split_stratified(capsys, tmp_path):
    code = main(
        [
            "inspect",
            "quickstart",
            "--set",
            "data.source=idx",
            "--set",
            f"data.path={SHARED_DATA / 'mnist_t10k'}",
            "--set",
            "data.split.given=pool",
            "--set",
            "data.duplicates.near=false",
            "--json",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sum(report["totals"].values()) == 10000
    assert report["totals"]["test"] == pytest.approx(2000, abs=10)


@pytest.mark.skipif(not BRAIN.is_dir(), reason="../shared/data/brain_tumor_mri is absent")
def test_the_indexed_near_duplicate_search_equals_comparing_every_pair_on_the_brain_set():
    from visionbench.config import load_config
    from visionbench.data.cache import decode
    from visionbench.data.hamming import all_pairs_within, hamming_pairs, plan

    config = load_config("recipes/brain_tumor.yaml", [f"data.path={BRAIN}"]).data
    decoded = decode(config.load(), config.preprocess)
    codes = decoded.phash[decoded.ok]
    # Real hashes are far from uniform (3,264 MRIs of four kinds, hundreds of copies): the
    # index must still find every pair the all-pairs search finds, at the recipe's threshold
    # and at wider ones.
    for threshold in (config.duplicates.near_threshold, 8, 12):
        assert plan(len(codes), threshold) is not None  # the index is what is tested
        assert hamming_pairs(codes, threshold).tolist() == \
            all_pairs_within(codes, threshold).tolist()
