"""Control characters from benchmarks and models are shown, never sent to a terminal; chosen names refuse them."""

from __future__ import annotations

import pytest

from misalign_tui.core.errors import UserError
from misalign_tui.core.text import check_name, has_control, printable


def test_printable_shows_every_control_but_tab_and_newline() -> None:
    hostile = "a\x1b]2;owned\x07b\x1bc\x9b2Jc\x7f\td\ne\r"
    out = printable(hostile)
    assert out == "a␛]2;owned␇b␛c\\x9b2Jc␡\td\ne␍"
    assert not has_control(out) and has_control(hostile)
    assert printable("plain [0, 1) text — ünïcode") == "plain [0, 1) text — ünïcode"


@pytest.mark.parametrize("name", ["evil\x1b[2J", "a\x9bb", "tab\tname", "new\nline"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="control characters"):
        check_name("model", name)
    assert check_name("model", "  fine-name  ") == "fine-name"
