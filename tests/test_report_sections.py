"""The report as a package: its one escaping layer, and each section drawn alone from a
small typed run (a hand-made leaderboard, comparison and data record; a document or two)."""

from __future__ import annotations

import ast
import html
from pathlib import Path

import pytest

from visionbench.report import build
from visionbench.report.markup import Html, breakable, interval_cell, join
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.report.sections import data, folds, leaderboard, shift, summary, tta
from visionbench.rundir.documents import (
    Comparison,
    DataRecord,
    DuplicateCount,
    DuplicateFindings,
    DuplicatePlaces,
    HeadlineOverFolds,
    IgnoredFiles,
    Interval,
    Leaderboard,
    LeaderboardRow,
    PropertyShiftRow,
    ReferenceComparison,
    ReferenceTest,
    ShiftDocument,
    SplitShift,
    Status,
    TtaGain,
)
from visionbench.rundir.layout import RunFolder

HOSTILE = "<img src=x onerror=alert('x')>&\""
REPORT = Path(build.__file__).parent


def _run(tmp_path: Path, *, models: tuple[str, ...] = ("a", "b"), record: dict | None = None,
         comparison: dict | None = None, rows: dict | None = None) -> Run:
    """A two-model run whose documents are made here, not trained."""
    record = DataRecord(source="synthetic", classes=["cat", "dog"], channels=1,
                        image_shape=[8, 8], splits={"train": {"cat": 4, "dog": 4},
                                                    "test": {"cat": 2, "dog": 2}},
                        totals={"train": 8, "test": 4}, **(record or {}))
    board = Leaderboard(primary_metric="accuracy", confidence=0.95, alpha=0.05,
                        metrics=["accuracy"], recommended=models[0], rows=[
                            LeaderboardRow(model=m, status=Status.OK, metrics={
                                "accuracy": Interval(value=0.9, low=0.8, high=0.95)},
                                **(rows or {}).get(m, {})) for m in models])
    found = Comparison(primary_metric="accuracy", recommended=models[0], alpha=0.05,
                       marks={m: "worse" for m in models[1:]}, pairs=[], **(comparison or {}))
    return Run(RunFolder(tmp_path), record, board, found, None, {}, {m: "#123456"
                                                                     for m in models})


def _exact(**places: dict[str, DuplicateCount]) -> DuplicateFindings:
    return DuplicateFindings(policy="warn", near_threshold=None, exact=DuplicatePlaces(**places),
                             near=DuplicatePlaces())


def _drawn(section, run: Run) -> str:
    page = Page()
    section(page, run)
    return "".join(page.parts)


def test_html_escapes_every_value_as_the_standard_library_does():
    assert Html("<td>{}</td>").format(HOSTILE) == f"<td>{html.escape(HOSTILE)}</td>"
    assert Html("<b>x</b>") + HOSTILE == f"<b>x</b>{html.escape(HOSTILE)}"
    assert join([Html("<i>1</i>"), "<2>"]) == "<i>1</i>&lt;2&gt;"
    # Markup goes in as it is: a cell inside a row is not escaped twice.
    assert Html("<tr>{}</tr>").format(Html("<td>{}</td>").format("&")) == "<tr><td>&amp;</td></tr>"
    assert breakable("a_b/<c>") == "a_<wbr>b/<wbr>&lt;c&gt;"
    assert interval_cell(None) == "<td>–</td>"


def test_a_page_takes_only_markup():
    page = Page()
    with pytest.raises(TypeError, match="Html"):
        page.add(f"<p>{HOSTILE}</p>")  # type: ignore[arg-type]
    page.section("x", HOSTILE)
    assert HOSTILE not in page.render(HOSTILE, HOSTILE)


def _html_calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == "Html"]


def test_no_module_of_the_report_escapes_by_hand_or_makes_markup_from_a_value():
    # Markup is made only from literal text: a value reaches the page through
    # Html.format, + or join, which escape it. The check must see every module.
    modules = sorted(p for p in REPORT.rglob("*.py") if p.name != "markup.py")
    assert len(modules) > 15
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}
        assert "html" not in imports, f"{path.name} escapes by hand"
        for call in _html_calls(tree):
            literal = all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                          for a in call.args)
            # The page's stylesheet is a file of the package, not a value from a run.
            read_asset = (len(call.args) == 1 and isinstance(call.args[0], ast.Call)
                          and getattr(call.args[0].func, "id", "") == "asset")
            assert literal or read_asset, (
                f"{path.name}:{call.lineno} makes markup from a value")


def test_sections_are_registered_in_page_order_with_one_number_each():
    names = SECTIONS.names()
    numbers = [name.split("-", 1)[0] for name in names]
    assert len(set(numbers)) == len(numbers)
    assert names[:5] == ["01-summary", "02-leaderboard", "03-tta", "04-folds", "05-sweep"]
    assert names[-1] == "12-models"


def test_the_leaderboard_escapes_model_and_reference_names(tmp_path):
    run = _run(tmp_path, models=(HOSTILE, "b"))
    run.comparison.references["ref" + HOSTILE] = ReferenceComparison(
        source=HOSTILE, metrics={"accuracy": 0.8}, models={HOSTILE: {"accuracy": ReferenceTest(
            test="binomial", p_greater=0.01, p_less=0.99, verdict="better")}})
    drawn = _drawn(leaderboard.leaderboard_section, run)
    assert HOSTILE not in drawn and html.escape(HOSTILE) in drawn
    assert "<h3>Against ref" in drawn and "better (p better 0.010, p worse 0.990)" in drawn


def test_the_summary_recommends_on_validation_and_names_leaks_into_test(tmp_path):
    leak = DuplicateCount(pairs=3, images=2, label_conflicts=1, examples=[])
    run = _run(tmp_path, record={"duplicates": _exact(across={"train~test": leak})})
    drawn = _drawn(summary.summary_section, run)
    assert "<b>Recommended: a</b>" in drawn
    assert "2 test image(s) duplicate training or validation images (3 exact pair(s), 1 of " \
        "them with different labels)" in drawn


def test_tta_is_its_own_section_and_escapes_its_rows(tmp_path):
    assert _drawn(tta.tta_section, _run(tmp_path)) == ""
    gain = TtaGain(model=f"{HOSTILE}+tta", against=HOSTILE, metric="accuracy", mcnemar_p=0.5,
                   difference=0.01, low=-0.02, high=0.04, p_value=0.3, views=["flip", "<x>"])
    drawn = _drawn(tta.tta_section, _run(tmp_path, comparison={"tta": [gain]}))
    assert drawn.startswith('<h3 id="tta">Test-time augmentation</h3>')
    assert HOSTILE not in drawn and "flip, &lt;x&gt;" in drawn and "+0.0100 [-0.0200, +0.0400]" \
        in drawn


def test_folds_warn_when_the_test_score_is_below_every_fold(tmp_path):
    assert _drawn(folds.folds_section, _run(tmp_path)) == ""
    spread = HeadlineOverFolds(count=3, mean=0.97, low=0.95, high=0.99,
                               values=[0.96, 0.97, 0.98])
    page = Page()
    folds.folds_section(page, _run(tmp_path, rows={"a": {"folds": spread}}))
    drawn = "".join(page.parts)
    assert "3-fold cross-validation: each model" in drawn
    assert "a (0.9000 on test; folds 0.9600–0.9800): the test score is below" in drawn
    assert len(page.figures) == 1


def test_the_shift_table_escapes_a_p_value_at_its_floor(tmp_path):
    run = _run(tmp_path)
    moved = PropertyShiftRow(name=HOSTILE, distance=0.4, p_value=1e-6, reference=[0.1, 0.2, 0.3],
                             other=[0.4, 0.5, 0.6], moved=True)
    run.folder.write(ShiftDocument(
        embedding="lite0", alpha=0.05, permutations=99, smallest_distance=0.1,
        reference_checksum="x", splits={"test": SplitShift(
            reference_images=50, images=40, mmd2=0.3, p_value=0.01, permutations=99, auc=0.8,
            shifted=True, properties=[moved])}))
    drawn = _drawn(shift.shift_section, run)
    assert "<td>test</td><td>40 vs 50</td><td>&lt; 0.01</td><td>0.800</td><td>shifted</td>" \
        in drawn
    assert HOSTILE not in drawn and "moved</td>" in drawn


def test_skipped_files_list_every_file_or_an_older_folders_ten(tmp_path):
    newer = IgnoredFiles(count=2, examples=["a.txt"], files=["a.txt", "b.pdf (too big)"])
    older = IgnoredFiles(count=12, examples=["a.txt"])
    assert newer.listed == ["a.txt", "b.pdf (too big)"] and older.listed == ["a.txt"]
    drawn = _drawn(data.data_section, _run(tmp_path, record={"ignored_files": newer}))
    assert ("<h3>Skipped files (2)</h3>" in drawn and "<td>b.pdf</td><td>too big</td>" in drawn
            and "<td>a.txt</td><td>not an image file</td>" in drawn)


def test_with_folds_the_duplicates_of_train_and_val_are_counted_together(tmp_path):
    one = DuplicateCount(pairs=1, images=2, label_conflicts=0, examples=[["x", "y"]])
    record = _run(tmp_path, record={"folds": {"1": {"cat": 2}}, "duplicates": _exact(
        within={"train": one, "val": one})}).data
    merged = data._duplicate_places(record, "exact")
    assert [(count.pairs, count.images, count.examples) for count in merged.values()] == [
        (2, 4, [["x", "y"], ["x", "y"]])]


def test_sections_with_nothing_to_show_draw_nothing(tmp_path):
    run = _run(tmp_path)
    for name, section in SECTIONS.items():
        if name.split("-", 1)[1] in ("summary", "leaderboard", "data", "models"):
            continue
        assert _drawn(section, run) == "", name
