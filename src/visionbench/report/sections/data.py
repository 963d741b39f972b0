"""The data: sources, splits per class, duplicates, skipped files, how separable the classes
look, and sample images as the models see them."""

from __future__ import annotations

from typing import Literal

from visionbench.data.describe import (
    describe_class_separation,
    describe_duplicate_search,
    describe_limit,
    describe_splits,
)
from visionbench.data.duplicates import place_label
from visionbench.report.markup import Html, join
from visionbench.report.page import Page
from visionbench.report.pictures import inline_picture
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import DataRecord, DuplicateCount
from visionbench.rundir.layout import duplicate_pairs_chart, sample_chart


@SECTIONS.register("06-data")
def data_section(page: Page, run: Run) -> None:
    """The data's description, tables and pictures."""
    page.section("data", "Data")
    record = run.data
    counts = _split_counts(record)
    splits = list(counts)
    body = join(Html("<tr><td>{}</td>{}</tr>").format(
        name, join(Html("<td>{}</td>").format(counts[s].get(name, 0)) for s in splits))
        for name in record.classes)
    totals = join(Html("<td><b>{}</b></td>").format(
        record.totals.get(s, sum(counts[s].values()))) for s in splits)
    limited = describe_limit(record)
    parts = [Html("<p>{}; images {}×{}, {} channel(s). {}</p>").format(
                 record.source, record.image_shape[0], record.image_shape[1],
                 record.channels, describe_splits(record)),
             Html('<div class="warn">{}</div>').format(limited) if limited else Html(),
             Html("<table><thead><tr><th>class</th>{}</tr></thead><tbody>{}"
                  "<tr><td><b>total</b></td>{}</tr></tbody></table>").format(
                 join(Html("<th>{}</th>").format(s) for s in splits), body, totals),
             _duplicates(run),
             _skipped(record)]
    variance = run.inspection.variance if run.inspection else None
    if variance:
        parts.append(Html("<p>{}</p>").format(describe_class_separation(variance)))
    samples = [(name, inline_picture(sample_chart(run.folder.data_dir, name), f"class {name}"))
               for name in record.classes]
    samples = [(name, picture) for name, picture in samples if picture]
    if samples:
        parts.append(Html('<h3>Samples (training images as the models see them)</h3>'
                          '<div class="samples">{}</div>').format(join(
            Html("<figure><figcaption>{}</figcaption>{}</figure>").format(name, picture)
            for name, picture in samples)))
    page.add(join(parts))


def _split_counts(record: DataRecord) -> dict[str, dict[str, int]]:
    """Images per split and class as the table shows them: with folds, train and val are
    one fold's cut only, so they are shown together as the cross-validated images."""
    if not record.folds:
        return record.splits
    pooled = {c: sum(record.splits.get(s, {}).get(c, 0) for s in ("train", "val"))
              for c in record.classes}
    return {f"cross-validated ({len(record.folds)} folds)": pooled,
            **{s: counts for s, counts in record.splits.items() if s not in ("train", "val")}}


def _duplicate_places(record: DataRecord, kind: Literal["exact", "near"]
                      ) -> dict[str, DuplicateCount]:
    """Duplicate counts by place as `place_label` names them; with folds the places of the
    cross-validated images are merged (counts summed)."""
    merged: dict[str, DuplicateCount] = {}
    for place in ("within", "across"):
        counts = record.duplicates.at(kind, place) if record.duplicates else {}
        for where, count in counts.items():
            label = place_label(where, bool(record.folds))
            merged[label] = merged[label] + count if label in merged else count
    return merged


def _duplicates(run: Run) -> Html:
    """The duplicates' table by kind and place, how they were searched, example pairs."""
    rows = [Html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
                kind, where, count.pairs, count.images, count.label_conflicts)
            for kind in ("exact", "near")
            for where, count in _duplicate_places(run.data, kind).items()]
    table = (Html("<table><thead><tr><th>kind</th><th>where</th><th>pairs</th><th>images</th>"
                  "<th>label conflicts</th></tr></thead><tbody>{}</tbody></table>").format(
        join(rows)) if rows else Html("<p>No duplicate images found.</p>"))
    return Html('<h3>Duplicates</h3>{}<p class="muted">{}</p>{}').format(
        table, describe_duplicate_search(run.data),
        inline_picture(duplicate_pairs_chart(run.folder.data_dir), "example duplicate pairs"))


def _skipped(record: DataRecord) -> Html:
    """Every file the run left out, with the reason."""
    rows = list(record.failures.items())
    for entry in record.ignored_files.listed if record.ignored_files else []:
        name, _, why = entry.partition(" (")
        rows.append((name, why.rstrip(")") if why else "not an image file"))
    if not rows:
        return Html()
    return Html('<h3>Skipped files ({})</h3><div class="scroll"><table><thead><tr>'
                "<th>file</th><th>why</th></tr></thead><tbody>{}</tbody></table></div>").format(
        len(rows), join(Html("<tr><td>{}</td><td>{}</td></tr>").format(name, why)
                        for name, why in rows))
