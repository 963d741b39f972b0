"""Progress of the slow work that follows training (robustness, explanations, the report):
what is being done, how far it is, and about how long is left.

On a terminal (progress `auto` or `bar`) a transient rich bar; otherwise a line per step,
at most one every `Steps.interval` seconds so that fast work stays quiet, and a step still
running `Steps.interval` seconds after it started is announced then, so no step longer than
that passes without a line; nothing when quiet.
"""

from __future__ import annotations

import sys
import threading
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
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

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
        with self._lock:
            index, self.done = self.done, self.done + 1
            if self._progress is not None:
                self._progress.update(self._task, completed=index,
                                      description=f"{self.label}: {what}")
            elif not self.quiet:
                self._cancel()
                if now - self._printed >= self.interval:
                    self._print(what, index, now)
                else:
                    # Said later if it is still the step then: a long step gets its line.
                    self._timer = threading.Timer(self.interval, self._late, (what, index))
                    self._timer.daemon = True
                    self._timer.start()

    def _late(self, what: str, index: int) -> None:
        with self._lock:
            if self.done == index + 1 and self._timer is not None:
                self._print(what, index, time.perf_counter())
                self._timer = None

    def _print(self, what: str, index: int, now: float) -> None:
        self._printed = now
        print(f"{self.label}: {what} ({index + 1}/{self.total}{self._left(now, index)})",
              file=sys.stderr, flush=True)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _left(self, now: float, done: int) -> str:
        if not done:
            return ""
        seconds = (now - self._start) / done * (self.total - done)
        return f", about {seconds:.0f} s left"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        with self._lock:
            self._cancel()
        if self._progress is not None:
            self._progress.stop()


def ignore(what: str) -> None:
    """A step callback for work nobody watches."""
