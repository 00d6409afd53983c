"""Errors meant for the user: one line that names the file, line or field, and what to do."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with code 2."""

    exit_code = 2


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop; finished items stay committed."""
