"""``python -m misalign_tui`` is the same as the ``misalign-tui`` command."""

from misalign_tui.cli import main

main()
