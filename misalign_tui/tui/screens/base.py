"""What every screen of the app shares: which widget has focus on entry, Escape, the footer.

No text field takes focus when a screen opens (a screen's letter keys would type into it); ``HOME`` names the
widget that does — a table or a list, which reads the arrow keys and lets every letter through to the screen.
Escape always leaves a text field or a select box for ``HOME``; pressed elsewhere it does the screen's ``back``
(the Item screen closes). The footer is ``KeysFooter``: the screen's keys, also while a field has focus.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Select, TextArea

from misalign_tui.tui.widgets.footer import KeysFooter

FIELDS = (Input, TextArea, Select)
W = TypeVar("W", bound=Widget)


def hidden(widget: W) -> W:
    """A widget that starts hidden (a line shown only when there is something to say: no blank row)."""
    widget.display = False
    return widget


class AppScreen(Screen[None]):
    HOME: ClassVar[str] = ""  # a CSS selector: the widget focused on entry and after Escape ("" for none)
    AUTO_FOCUS: ClassVar[str | None] = ""
    BINDINGS: ClassVar = [Binding("escape", "leave_field", "Leave field", show=False)]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)  # type: ignore[arg-type]
        cls.AUTO_FOCUS = cls.HOME  # Textual focuses it on every entry; "" focuses nothing

    def footer(self) -> KeysFooter:
        return KeysFooter()

    def in_field(self) -> bool:
        focused = self.focused
        return focused is not None and any(isinstance(node, FIELDS) for node in focused.ancestors_with_self)

    def home_widget(self) -> Widget | None:
        if not self.HOME:
            return None
        found = self.query(self.HOME)
        return found.first() if found else None

    def action_leave_field(self) -> None:
        if self.in_field():
            home = self.home_widget()
            self.set_focus(home)
        else:
            self.action_back()

    def action_back(self) -> None:
        """Escape outside a field: nothing by default; a pushed screen closes itself."""
