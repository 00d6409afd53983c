"""Text from benchmarks, models and users on its way to a terminal or a human-readable file.

Benchmark prompts, model answers and registered names are hostile input: an ``ESC`` sequence can retitle or reset
a terminal, write to its clipboard (OSC 52) or blank the screen. ``printable`` makes every control character
visible instead — C0 controls but tab and newline as their Unicode control pictures (``ESC`` → ``␛``), DEL as
``␡``, C1 controls as ``\\x9b``-style escapes — so nothing reaches a terminal as a command. Stored data is never
changed; call it where text is shown or written for people (tables, reports, the app's widgets). Names a user
chooses are refused outright when they hold control characters (``check_name``).
"""

from __future__ import annotations

import re

from misalign_tui.core.errors import UserError

# C0 except \t and \n, DEL, and C1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (ESC → ␛)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{code:02x}"  # C1: no control picture exists


def printable(text: str) -> str:
    """``text`` with every control character except tab and newline shown visibly (see the module docstring)."""
    return _CONTROL.sub(lambda m: _visible(m.group(0)), text)


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def check_name(kind: str, name: str) -> str:
    """A name the user chooses (model, benchmark, session, reviewer): refused when it holds control characters
    (including tab and newline, which break tables and files); returns it stripped."""
    if has_control(name) or "\t" in name or "\n" in name:
        raise UserError(f"{kind} name {printable(name)!r}: contains control characters; choose a name without them")
    return name.strip()


def printable_line(text: str) -> str:
    """``printable`` for one line of a table, a title or a label: tab and newline shown too (``␉``, ``␤``)."""
    return printable(text).replace("\t", "\u2409").replace("\n", "\u2424")


# -- names in narrow places ----------------------------------------------------------------------------------------

ELLIPSIS = "…"


def cell_width(text: str) -> int:
    """Terminal cells ``text`` takes (wide characters count two), as the app's renderer measures it."""
    from rich.cells import cell_len

    return cell_len(text)


def _cut_to(text: str, width: int, from_end: bool = False) -> str:
    """The longest prefix (or suffix) of ``text`` that fits in ``width`` cells."""
    chars = reversed(text) if from_end else iter(text)
    out: list[str] = []
    used = 0
    for ch in chars:
        w = cell_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(reversed(out)) if from_end else "".join(out)


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` cells: whole when it fits, else its start and its end around a middle
    ellipsis, half each (``gemma-3-270m-q4_k_m`` in 14 cells is ``gemma-3…q4_k_m``): the start says what family
    a name is, the end tells apart names that share a stem (a quantisation, a size, a version). Figures are never passed here: only names
    shrink, so a table or a chart never cuts a number, its interval or its n."""
    if cell_width(name) <= width:
        return name  # also a name of no width (a lone control character) in a zero-width column
    if width <= 0:
        return ""
    if width == 1:
        return ELLIPSIS
    room = width - 1
    tail = _cut_to(name, room // 2, from_end=True)
    head = _cut_to(name, room - cell_width(tail))
    return head + ELLIPSIS + tail


def shorten_all(names: list[str], width: int) -> list[str]:
    """``shorten`` each name, keeping names that differ distinct where the width allows: when two shortened
    names collide, the end is given more room until they differ (names of one family differ at the end)."""
    out = [shorten(n, width) for n in names]
    if width < 3 or len(set(out)) == len(set(names)):
        return out
    room = width - 1
    for tail_share in range(room // 2 + 1, room + 1):
        trial = []
        for n in names:
            if cell_width(n) <= width:
                trial.append(n)
                continue
            tail = _cut_to(n, tail_share, from_end=True)
            trial.append(_cut_to(n, room - cell_width(tail)) + ELLIPSIS + tail)
        if len(set(trial)) == len(set(names)):
            return trial
    return out


def fit_widths(natural: list[int], shrinkable: list[bool], available: int,
               minimum: list[int] | None = None) -> list[int]:
    """Column widths for ``available`` cells: every column at its natural width when they fit; otherwise only
    the ``shrinkable`` ones (names) give up cells — the widest first, never below ``minimum`` (default 6 or
    their natural width) — while figures keep theirs. When even that does not fit, names stay at their minimum
    and the table is wider than ``available`` (it scrolls), rather than cutting a number."""
    widths = list(natural)
    mins = [min(n, 6) for n in natural] if minimum is None else [min(n, m) for n, m in zip(natural, minimum,
                                                                                          strict=True)]
    excess = sum(widths) - available
    if excess <= 0:
        return widths
    flexible = [i for i, s in enumerate(shrinkable) if s]
    while excess > 0:
        candidates = [i for i in flexible if widths[i] > mins[i]]
        if not candidates:
            break
        widest = max(widths[i] for i in candidates)
        tops = [i for i in candidates if widths[i] == widest]
        others = [widths[i] for i in candidates if widths[i] < widest]
        step = widest - max([*others, *(mins[i] for i in tops)])  # how far the widest can come down together
        step = max(1, min(step, -(-excess // len(tops))))
        for i in tops:
            cut = min(step, widths[i] - mins[i], excess)
            widths[i] -= cut
            excess -= cut
            if excess <= 0:
                break
    return widths
