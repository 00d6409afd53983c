"""Where the database and the model files live.

Order of precedence: ``--home DIR``, ``$MISALIGN_TUI_HOME``, the current directory when it already holds a
``db/`` or ``models/`` folder, then the user data directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from misalign_tui.core.errors import UserError

ENV_HOME = "MISALIGN_TUI_HOME"
DB_NAME = "misalign.sqlite"


@dataclass(frozen=True)
class Workspace:
    home: Path

    @property
    def db_dir(self) -> Path:
        return self.home / "db"

    @property
    def db_path(self) -> Path:
        return self.db_dir / DB_NAME

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def ensure(self) -> Workspace:
        """Create the folders; fail with one line when the home cannot be written."""
        for folder in (self.home, self.db_dir, self.models_dir):
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{folder}: exists and is not a folder; choose another --home")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{folder}: cannot create the workspace folder ({exc.strerror})") from exc
        if not os.access(self.home, os.R_OK | os.X_OK):
            raise UserError(f"{self.home}: the workspace folder is not readable; fix its permissions or use --home")
        return self

    @property
    def exists(self) -> bool:
        return self.db_path.exists()


def resolve_home(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    here = (cwd or Path.cwd()).resolve()
    if (here / "db").is_dir() or (here / "models").is_dir():
        return here
    return Path(platformdirs.user_data_dir("misalign-tui", appauthor=False))


def open_workspace(explicit: str | os.PathLike[str] | None = None) -> Workspace:
    return Workspace(resolve_home(explicit))
