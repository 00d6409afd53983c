"""Reading a small text file the user named (recipe, taxonomy extension, alias list) with one-line errors."""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core.errors import UserError


def unreadable(path: Path, exc: OSError, what: str = "file") -> UserError:
    """The one line for a file the user named that cannot be opened (missing, a folder, no permission...)."""
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{path}: no such {what}")
    if isinstance(exc, IsADirectoryError):
        return UserError(f"{path}: is a folder; give the path of a {what}")
    return UserError(f"{path}: cannot read ({exc.strerror})")


def read_user_text(path: str | Path, what: str = "file", encoding: str = "utf-8") -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is a UserError naming it."""
    p = Path(path)
    try:
        return p.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise unreadable(p, exc, what) from exc
