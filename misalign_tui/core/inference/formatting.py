"""How a prompt is presented to a model: its chat template with one user turn and the generation prompt, or, for
base models, the plain completion format. One formatter for the in-process engine and for remote servers, so a
server sees exactly the text the engine would score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from misalign_tui.core.errors import UserError

PLAIN_FORMAT = "User: {text}\nAssistant:"
PLAIN_TURN_SEPARATOR = "\n\n"  # between the finished turns of a few-shot conversation in the plain format


def format_user_turn(chat_template: str | None, text: str, *, bos: str = "", eos: str = "",
                     source: str = "the model", history: Sequence[tuple[str, str]] = ()) -> str:
    """The user's message up to where the answer starts.

    With a chat template: the template rendered with one user turn and the generation prompt, with ``bos`` and
    ``eos`` as the template's special-token texts; a leading BOS text is dropped, since BOS is added when the
    text is tokenized (the engine adds it; a server adds its own). Without: ``PLAIN_FORMAT``. ``source`` names the
    model in an error. ``history``: finished (user, assistant) turns before this one — few-shot
    demonstrations — as a conversation in the chat template, or plain turns separated by a blank line; the same
    history makes the same text prefix, which the engine evaluates once.
    """
    if chat_template is None:
        turns = [PLAIN_FORMAT.replace("{text}", u) + " " + a for u, a in history]
        return PLAIN_TURN_SEPARATOR.join([*turns, PLAIN_FORMAT.replace("{text}", text)])
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    messages: list[Any] = []  # chat messages as llama-cpp-python's formatter takes them
    for u, a in history:
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": text})
    try:
        formatter = Jinja2ChatFormatter(chat_template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        out = formatter(messages=messages).prompt
    except Exception as exc:  # noqa: BLE001 - any Jinja error is the template's
        raise UserError(f"{source}: the chat template cannot be rendered ({exc}); set another with "
                        "misalign-tui models set MODEL --chat-template FILE|none") from exc
    if bos and out.startswith(bos):
        out = out[len(bos):]
    return out


def continuation_separator(chat_template: str | None) -> str:
    """What goes between a formatted prompt and a response scored as its continuation: a space after the plain
    format's ``Assistant:``, nothing after a chat template's generation prompt."""
    return "" if chat_template is not None else " "
