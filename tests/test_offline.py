"""The suite itself proves the program stays offline: non-loopback connections fail, loopback works."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def test_non_loopback_connection_is_blocked() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError, match="blocks non-loopback"):
        s.connect(("93.184.216.34", 80))
    s.close()


def test_loopback_connection_is_allowed() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    conn, _ = server.accept()
    client.sendall(b"ok")
    assert conn.recv(2) == b"ok"
    for s in (client, conn, server):
        s.close()


def test_core_never_imports_textual() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import misalign_tui.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'misalign_tui.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] == 'textual' or n.startswith('misalign_tui.tui'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_core_sources_have_no_import_of_textual_or_the_tui_even_inside_functions() -> None:
    import re
    from pathlib import Path

    import misalign_tui.core as core

    pattern = re.compile(r"^\s*(from|import)\s+(textual\b|misalign_tui\.tui\b|misalign_tui import tui\b)", re.M)
    offenders = [str(p) for p in Path(core.__path__[0]).rglob("*.py") if pattern.search(p.read_text("utf-8"))]
    assert offenders == []
