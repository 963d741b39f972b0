"""Progress of the slow work that follows training (robustness, explanations, the report):
what is being done, how far it is, and about how long is left.

On a terminal (progress `auto` or `bar`) a transient rich bar; otherwise a line per step,
at most one every `Steps.interval` seconds so that fast work stays quiet and a long silent
stretch does not; nothing when quiet.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, ClassVar


class Steps:
    """`total` steps of work named `label`; call `step(what)` as each step starts."""

    interval: ClassVar[float] = 2.0

    def __init__(self, label: str, total: int, mode: str = "auto") -> None:
        self.label, self.total = label, total
        self.bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.quiet = mode == "quiet" or total == 0
        self.done = 0
        self._start = self._printed = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self.bar and not self.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total}"),
                                      TimeRemainingColumn(), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self

    def step(self, what: str) -> None:
        """Step `what` starts (the ones before it are done)."""
        now = time.perf_counter()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done,
                                  description=f"{self.label}: {what}")
        elif not self.quiet and now - self._printed >= self.interval:
            self._printed = now
            print(f"{self.label}: {what} ({self.done + 1}/{self.total}{self._left(now)})",
                  file=sys.stderr, flush=True)
        self.done += 1

    def _left(self, now: float) -> str:
        if not self.done:
            return ""
        seconds = (now - self._start) / self.done * (self.total - self.done)
        return f", about {seconds:.0f} s left"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()


def ignore(what: str) -> None:
    """A step callback for work nobody watches."""
