"""Unfamiliar images: each model's detector, what it flags of validation and test at the
threshold chosen on validation, and how well it tells foreign images from test images."""

from __future__ import annotations

from visionbench.report.markup import Html, breakable, join, number
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.documents import GenericUnfamiliar, ModelMetrics, Unfamiliar


@SECTIONS.register("10-unfamiliar")
def unfamiliar_section(page: Page, run: Run) -> None:
    """The detectors' table and which rows borrow a network's detector (nothing when the
    run fitted none)."""
    documents = {row.model: document for row in run.board.rows
                 if (document := run.folder.model(row.model).read(Unfamiliar)) is not None}
    if not documents:
        return
    generic = run.folder.read(GenericUnfamiliar)
    page.section("unfamiliar", "Unfamiliar images")
    sets = list(dict.fromkeys(name for document in documents.values()
                              for name in document.foreign))
    body = []
    for model, document in documents.items():
        cells = []
        for name in sets:
            measured = document.foreign.get(name)
            cells.append(Html("<td>–</td>") if measured is None else Html(
                '<td>{} <span class="muted">[{}, {}]</span>, {}, {:.0%}</td>').format(
                number(measured.auroc, 3), number(measured.auroc_low, 3),
                number(measured.auroc_high, 3), number(measured.fpr_at_95, 3),
                measured.flagged))
        shares = join(Html("<td>{:.1%}</td>").format(document.flagged[split].share)
                      if split in document.flagged else Html("<td>–</td>")
                      for split in ("val", "test"))
        body.append(Html("<tr><td>{}</td><td>{}{}</td>{}{}</tr>").format(
            model, document.method, " + generic" if document.generic else "", shares,
            join(cells)))
    first = next(iter(documents.values()))
    generic_text = (Html(", combined with a generic embedding ({}, {}) that sees what a narrow "
                         "model's features ignore").format(generic.embedding, generic.method)
                    if generic is not None else Html())
    generated = any(name.startswith("generated:") for name in sets)
    floor = (Html('<div class="warn">No foreign image set was named '
                  "(evaluate.unfamiliar.foreign): the sets marked generated (noise, blank "
                  "images, photo crops, digits) are a floor, not a measure on the images this "
                  "model will meet.</div>") if generated else Html())
    page.add(Html(
        '<p class="muted">Each model scores how unlike its training images an image is: its '
        "own penultimate features ({method}){generic}. The threshold is chosen on validation "
        "only, so that {keep:.0%} of validation images pass; predict, the app and "
        "<code>--sort-into</code> flag images above it. Foreign sets: AUROC (foreign against "
        "the test images) with its bootstrap interval, the false-positive rate on test images "
        "at 95 % of foreign images caught, and the share of foreign images flagged at the "
        "threshold.</p>{floor}"
        '<div class="scroll"><table><thead><tr><th>model</th><th>detector</th>'
        "<th>validation flagged</th><th>test flagged</th>{head}</tr></thead>"
        "<tbody>{body}</tbody></table></div>").format(
        method=first.method, generic=generic_text, keep=first.keep, floor=floor,
        head=join(Html("<th>{}: AUROC [CI], FPR@95, flagged</th>").format(breakable(name))
                  for name in sets),
        body=join(body)))
    borrowed = [f"{row.model} answers with {metrics.networks[0]}'s"
                for row in run.board.rows if row.model not in documents
                and (metrics := run.folder.model(row.model).read(ModelMetrics)) is not None
                and not metrics.fold_ensemble and metrics.networks[0] in documents]
    if borrowed:
        page.add(Html('<p class="muted">{} detector: an ensemble or a test-time augmentation '
                      "row flags images with its first network's detector (they learnt from "
                      "the same training images and were set on the same validation images)."
                      "</p>").format("; ".join(borrowed)))
