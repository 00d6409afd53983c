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
