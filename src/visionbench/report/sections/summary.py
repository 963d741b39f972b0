"""The summary: the recommended model with the evidence for it, then the warnings that
change how every number below reads (leaks, a limited dataset, shift, failed models)."""

from __future__ import annotations

from visionbench import display
from visionbench.data.describe import describe_limit
from visionbench.evaluate.leaderboard import recommendation_sentence
from visionbench.evaluate.shift import verdict
from visionbench.report.markup import Html
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.report.sections.clinical import positive_name
from visionbench.rundir.documents import DataRecord, ShiftDocument, Status, notices_with


@SECTIONS.register("01-summary")
def summary_section(page: Page, run: Run) -> None:
    """The recommendation (or why there is none) and the warnings, most consequential
    first."""
    page.section("summary", "Summary")
    chosen = run.comparison.recommended
    if chosen:
        page.add(Html('<p class="ok">{}</p>').format(
            _recommendation(run, chosen, run.board.primary_metric)))
        shifted = _shift_banner(run)
        if shifted:
            page.add(Html('<div class="warn">{}</div>').format(shifted))
    else:
        page.add(Html('<div class="warn">{}</div>').format(recommendation_sentence(run.board)))
    for warning in _warnings(run):
        page.add(Html('<div class="warn">{}</div>').format(warning))


def _recommendation(run: Run, chosen: str, primary: str) -> Html:
    """The recommended model, why it was chosen on validation, and its test score once."""
    selection = run.comparison.selection
    entry = run.row(chosen).metrics[primary]
    text = Html("<b>Recommended: {}</b>").format(chosen)
    if selection.reason:
        text += Html(" — {}").format(selection.reason)
    validation = selection.values.get(chosen)
    if validation is not None:
        text += f" (validation {primary} {display.number(validation)})"
    text += f". Its test {primary}: {display.number(entry.value)}"
    bounds = display.bounds(entry)
    if bounds is not None:
        text += f" ({display.level(run.board.confidence)} interval {bounds})"
    text += "."
    test_best = run.comparison.test_best
    if test_best and test_best != chosen:
        text += Html("<br>Best on test: {} ({} {}); the highest of several noisy test scores "
                     "is optimistic, and choosing by it would let the test split decide. "
                     "Against {} on test: {}.").format(
            test_best, primary, display.number(run.row(test_best).metrics[primary].value),
            chosen, run.comparison.marks.get(test_best, "untested"))
    tied = [m for m in selection.tied if m != chosen]
    if tied:
        text += Html("<br>Not told apart from the best on validation (paired bootstrap, alpha "
                     "{}): {}.").format(run.comparison.alpha, display.names(tied))
    for name, reference in run.comparison.references.items():
        test = reference.models.get(chosen, {}).get("accuracy")
        if test is not None:
            source = f", {reference.source}" if reference.source else ""
            text += Html("<br>Against {} (accuracy {}{}): {} (one-sided exact binomial p = {} "
                         "that it is better).").format(
                name, display.number(reference.metrics["accuracy"]), source, test.verdict,
                display.p_value(test.p_greater))
    evaluation = run.evaluations.get(chosen)
    clinical = evaluation.clinical if evaluation else None
    if clinical:
        argmax = clinical.argmax
        text += Html("<br>{} at argmax: sensitivity {}, specificity {}; <b>{} positive test "
                     "images predicted negative</b>.").format(
            positive_name(clinical), display.interval(argmax.sensitivity, 3),
            display.interval(argmax.specificity, 3), int(argmax.missed_positives.value))
    clean = run.row(chosen).clean_test
    if clean:
        around = f" ({display.bounds(clean)})" if clean.low is not None else ""
        text += Html("<br>On the {} test images that do not duplicate a training image: "
                     "{} {}{}.").format(clean.images, primary, display.number(clean.value),
                                        around)
    return text


def _shift_banner(run: Run) -> str | None:
    """The sentence beside the headline when the test images have shifted from the
    training images (None when they have not, or were not tested)."""
    document = run.folder.read(ShiftDocument)
    test = document.splits.get("test") if document is not None else None
    if test is None or not test.shifted:
        return None
    return (verdict(test, "The test images") + ": scores on validation, which chose the "
            "model, overstate what test and real use show; see 'Shift between splits'.")


def _warnings(run: Run) -> list[str]:
    """The banners of the summary, most consequential first: leaks into test, leaks into
    validation, a limited dataset, then the rest of the data's and the models' warnings."""
    limited = describe_limit(run.data)
    banners = duplicate_banners(run.data) + ([limited] if limited else [])
    banners += [warning.message for warning in run.data.warnings
                if warning.code != "test_duplicates"]
    for row in run.board.rows:
        if row.status is not Status.OK:
            banners.append(f"model {row.model} {row.status.value}: {row.error}")
    for name, evaluation in run.evaluations.items():
        for note in notices_with(evaluation.notes, "one_class_only"):
            banners.append(f"{name}: {note.message}")
    return banners


def duplicate_banners(data: DataRecord) -> list[str]:
    """At most two sentences on duplicates across splits: test images that duplicate
    training or validation ones (their scores measure memory), then validation images that
    duplicate training ones (they inflate validation scores, which choose the model, stop
    training early and set thresholds)."""
    findings = data.duplicates
    across = {kind: findings.at(kind, "across") if findings else {}
              for kind in ("exact", "near")}

    def tally(places: tuple[str, ...]) -> tuple[int, dict[str, int], int]:
        images, pairs, conflicts = 0, {}, 0
        for kind, counts in across.items():
            for where, count in counts.items():
                if where in places:
                    images += count.images
                    pairs[kind] = pairs.get(kind, 0) + count.pairs
                    conflicts += count.label_conflicts
        return images, pairs, conflicts

    def detail(pairs: dict[str, int], conflicts: int) -> str:
        text = ", ".join(f"{count:,} {kind} pair(s)" for kind, count in pairs.items() if count)
        return text + (f", {conflicts:,} of them with different labels" if conflicts else "")

    banners = []
    counted, pairs, conflicts = tally(("train~test", "val~test"))
    leaked = notices_with(data.warnings, "test_duplicates")
    if counted or leaked:
        images = leaked[0].data.get("images", counted) if leaked else counted
        dropped = bool(findings and findings.dropped_from_test)
        banners.append(
            f"{images:,} test image(s) duplicate training or validation images "
            f"({detail(pairs, conflicts)}): "
            + ("they were dropped from the test split." if dropped else
               "test scores on them measure memory, not generalisation; the summary gives the "
               "recommended model's score without them."))
    counted, pairs, conflicts = tally(("train~val",))
    if counted:
        banners.append(
            f"{counted:,} validation image(s) duplicate training images "
            f"({detail(pairs, conflicts)}): they inflate validation scores, and validation "
            "chooses the recommended model, stops training early and sets thresholds, so "
            "those choices lean toward models that memorise.")
    return banners
