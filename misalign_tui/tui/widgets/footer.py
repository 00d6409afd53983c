"""The footer every screen shows: the screen's keys first, then the app's — also while a text field has focus.

Textual's own footer lists only the keys that would reach a binding now, so while an input has focus every
letter key vanishes and the footer goes blank. Here the screen's keys stay listed; those the field would type
instead are dimmed, and ``esc`` (leave the field) comes first, so a user always sees how to get the keys back.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, TextArea
from textual.widgets._footer import FooterKey

LEAVE_FIELD = Binding("escape", "leave_field", "Leave field")


class KeysFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        screen, app = self.screen, self.app
        active = screen.active_bindings  # what a key press would reach now
        typing = isinstance(screen.focused, Input | TextArea)
        rows: list[tuple[Binding, bool]] = [(LEAVE_FIELD, True)] if typing else []
        seen: set[str] = {LEAVE_FIELD.action} if typing else set()
        chain = [(node, node._bindings) for node in (screen.focused.ancestors_with_self if screen.focused else ())
                 if node is not screen and node is not app]
        chain += [(screen, screen._bindings), (app, app._bindings)]
        for namespace, bindings in chain:
            for key, binding in bindings:
                if not binding.show or binding.action in seen:
                    continue
                state = app._check_action_state(binding.action, namespace)
                if state is False:
                    continue
                seen.add(binding.action)
                reachable = key in active and active[key].binding.action == binding.action
                rows.append((binding, bool(state) and reachable))
        self.styles.grid_size_columns = len(rows)
        for binding, enabled in rows:
            yield FooterKey(binding.key, app.get_key_display(binding), binding.description, binding.action,
                            disabled=not enabled, tooltip=binding.tooltip)
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
            _node, binding, enabled, tooltip = active[app.COMMAND_PALETTE_BINDING]
            yield FooterKey(binding.key, app.get_key_display(binding), binding.description, binding.action,
                            classes="-command-palette", disabled=not enabled,
                            tooltip=binding.tooltip or binding.description)
