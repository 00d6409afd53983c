"""The suite itself proves the program stays offline: non-loopback connections fail, loopback works. (That the
core never imports textual is an import contract: tests/test_architecture.py.)"""

from __future__ import annotations

import socket

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
