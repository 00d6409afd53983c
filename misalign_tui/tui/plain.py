"""Text from benchmarks, models and users on its way into a widget: always plain ``Content``, never markup.

A prompt holding "the interval [0, 1)" or "[/]" is not markup, and an ``ESC`` in a response is not a command for
the terminal. Every widget of the app gets such text through these functions: control characters are shown
visibly (``core.text.printable``) and nothing is parsed, so no text can crash a screen or restyle it. The app's
own words go through the same functions; the styles are given as ``(text, style)`` pairs, never as tags.
"""

from __future__ import annotations

from textual.content import Content

from misalign_tui.core.text import printable, printable_line

Part = str | tuple[str, str] | Content


def plain(text: object) -> Content:
    """Any text as it is, lines kept, control characters shown."""
    return Content(printable(str(text)))


def line(text: object) -> Content:
    """One line (a title, a label, a table cell): tab and newline shown as well."""
    return Content(printable_line(str(text)))


def styled(text: object, style: str) -> Content:
    return Content.styled(printable(str(text)), style)


def assemble(*parts: Part) -> Content:
    """Pieces of plain text, ``(text, style)`` pairs and ready ``Content``, joined without parsing any of them."""
    out: list[str | tuple[str, str] | Content] = []
    for part in parts:
        if isinstance(part, Content):
            out.append(part)
        elif isinstance(part, tuple):
            out.append((printable(part[0]), part[1]))
        else:
            out.append(printable(part))
    return Content.assemble(*out)


def lines(*rows: Part | list[Part]) -> Content:
    """Several rows, each a part or a list of parts, joined by newlines."""
    built = [assemble(*row) if isinstance(row, list) else assemble(row) for row in rows]
    return Content("\n").join(built)
