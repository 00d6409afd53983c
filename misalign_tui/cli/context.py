"""What every command shares: the workspace, its store, and output in table or JSON form."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from misalign_tui.core.store import Store
from misalign_tui.core.workspace import Workspace, open_workspace

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, home: str | None, debug: bool = False) -> None:
        self.home_arg = home
        self.debug = debug
        self._workspace: Workspace | None = None
        self._store: Store | None = None
        self.console = Console()
        self.err = Console(stderr=True)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = open_workspace(self.home_arg)
        return self._workspace

    @property
    def store(self) -> Store:
        """The workspace database, created (with the taxonomy) on first use."""
        if self._store is None:
            from misalign_tui.core.taxonomy import published_taxonomy

            ws = self.workspace.ensure()
            self._store = Store(ws.db_path)
            if not self._store.conn.execute("SELECT 1 FROM domains LIMIT 1").fetchone():
                self._store.sync_taxonomy(published_taxonomy())
        return self._store


pass_ctx = click.make_pass_decorator(Context)

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="json: stdout carries the JSON document alone.")


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
