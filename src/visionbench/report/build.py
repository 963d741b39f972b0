"""`report.html`: one self-contained page per run, built from the run folder alone.

Everything is inlined (plotly.js once, gzipped and unpacked by the browser; pictures in the
smaller of a palette PNG and a JPEG), so the file works offline and can be mailed; the
same folder always gives the same bytes, so `visionbench report` rebuilds it identically.
"""

from __future__ import annotations

from pathlib import Path

from visionbench.report import sections
from visionbench.report.page import Page
from visionbench.report.run import SECTIONS, Run
from visionbench.rundir.layout import RunFolder
from visionbench.runtime.progress import Steps

# Importing the package registers every section.
assert sections.__all__


def build_report(folder: RunFolder, progress: str = "quiet") -> str:
    """The report's HTML for the run in `folder`; `progress` as in `train.progress`."""
    run = Run.read(folder)
    drawn = SECTIONS.items()
    # A step per section, and one per model inside the models' section.
    with Steps("report", len(drawn) + len(run.board.rows), progress) as steps:
        page = Page(steps.step)
        for key, section in drawn:
            steps.step(key.split("-", 1)[1])
            section(page, run)
    where = folder.path.resolve()  # `report .` names the folder as its full path does
    title = f"visionbench report — {where.parent.name} / {where.name}"
    subtitle = (f"{run.data.source}; {len(run.data.classes)} classes; "
                f"{len(run.board.rows)} models")
    return page.render(title, subtitle)


def write_report(folder: RunFolder, progress: str = "quiet") -> Path:
    """Build and write the run's report.html atomically; returns its path."""
    return folder.write_report(build_report(folder, progress))
