"""Errors that end a command with a one-line message and exit code 2.

A `UserError` is raised for anything the user can fix (a wrong path, a bad config key, an
empty class folder); the CLI prints its message on one line without a traceback.
"""


class UserError(Exception):
    """An input problem the user can fix; the message says what to fix."""

    exit_code = 2


class InterruptedRunError(Exception):
    """Ctrl-C stopped a run; its finished models and records are kept, and the message
    says where it stopped and how to resume."""

    exit_code = 130
