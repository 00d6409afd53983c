"""The README stays true where it can be checked mechanically: its list of tables and views is the schema's."""

from __future__ import annotations

import re
from pathlib import Path

from misalign_tui.core.store import Store

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_table_and_view_of_the_schema(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- schema -->", 1)[1].split("<!-- /schema -->", 1)[0]
    listed = {name for line in block.splitlines() if line.startswith("| `")
              for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    with Store(tmp_path / "db.sqlite") as store:
        actual = {r[0] for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")}
    assert listed == actual, f"README lists {sorted(listed - actual)} not in the schema; misses {sorted(actual - listed)}"


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"pip install -e '\.\[test\]' && (python -m pytest[^\n`]*)", README.read_text()).group(1)
    ci = (README.parent / ".ci" / "run").read_text()
    assert command.strip() in ci
