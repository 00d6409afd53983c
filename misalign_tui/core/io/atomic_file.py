"""Files written whole or not at all: exports and reports go to a temporary file beside the target, renamed
over it only once everything is written, so a failure half-way (a damaged database, a full disk, Ctrl+C) leaves
no partial or empty file and an existing file as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from misalign_tui.core.errors import UserError


@contextmanager
def atomic_text_file(path: str | Path) -> Iterator[TextIO]:
    """A text file (UTF-8, newlines as written) that appears at ``path`` when the block ends without error."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        fh = open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise UserError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    try:
        with fh:
            yield fh
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{target}: cannot write ({exc.strerror or exc}); nothing was written there") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
