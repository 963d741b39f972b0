"""CSV cells a spreadsheet will not run: every CSV visionbench writes goes through here.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets, and a file or class name can start with one. Such a
cell gets a leading `'` (OWASP's advice), which spreadsheets show as text and hide; a cell
that already starts with `'` gets one more, so `unescape` gives back exactly what was
written. A number (`-0.25`) is left as it is: it is data, not a formula.

Example:
    >>> escape("=HYPERLINK(\\"http://x\\")"), escape("-0.25"), escape("cat")
    ('\\'=HYPERLINK("http://x")', '-0.25', 'cat')
    >>> unescape(escape("'quoted")), unescape(escape("@SUM(A1)"))
    ("'quoted", '@SUM(A1)')
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def is_number(text: str) -> bool:
    """Whether `text` reads as a number (a cell spreadsheets take as data)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def escape(value: Any) -> Any:
    """`value` as a cell no spreadsheet runs (strings only; other values pass through)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not is_number(value):
        return "'" + value
    return value


def unescape(text: str) -> str:
    """The text `escape` was given, from a cell it wrote."""
    return text[1:] if text.startswith("'") else text


class Writer:
    """`csv.writer` whose every cell is escaped."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle, lineterminator="\n")

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row."""
        self._writer.writerow([escape(value) for value in row])


class DictWriter(csv.DictWriter):
    """`csv.DictWriter` whose every cell, header included, is escaped."""

    def __init__(self, handle: TextIO, fieldnames: list[str]) -> None:
        super().__init__(handle, fieldnames=fieldnames, lineterminator="\n")

    def writeheader(self) -> Any:
        """Write the header row."""
        return self.writer.writerow([escape(name) for name in self.fieldnames])

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        """Write one row."""
        return super().writerow({key: escape(value) for key, value in rowdict.items()})
