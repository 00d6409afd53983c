"""Shared fixtures: no network beyond loopback, a fresh workspace, the CLI runner."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and abstract sockets stay allowed
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name that is not localhost would need DNS: refuse


class NetworkBlocked(OSError):
    pass


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        raise NetworkBlocked(f"test suite blocks non-loopback connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        raise NetworkBlocked(f"test suite blocks non-loopback connection to {address!r}")
    return _real_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    # For the whole run, before any test module imports a client library.
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty workspace folder."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def cli_run(home: Path):
    """Run the CLI through ``main`` (the real error handling) against the test workspace."""
    from misalign_tui.cli import main

    def run(*args: str, input: str | None = None):
        runner = CliRunner()
        return runner.invoke(_main_command(main), ["--home", str(home), *args], input=input, catch_exceptions=False)

    return run


def _main_command(main):
    import click

    @click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                     "help_option_names": []})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def wrapper(args: tuple[str, ...]) -> None:
        main(list(args))

    return wrapper


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 MB llama GGUF with random weights and no chat template (a "base model")."""
    from misalign_tui.devtools.synthetic_model import write_random_gguf

    return write_random_gguf(tmp_path_factory.mktemp("models") / "tiny-base.gguf", seed=1, name="tiny-base")


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shape with a simple Jinja chat template (``<|user|>``/``<|assistant|>`` turns)."""
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE, write_random_gguf

    return write_random_gguf(tmp_path_factory.mktemp("models") / "tiny-chat.gguf", seed=2,
                             chat_template=SIMPLE_CHAT_TEMPLATE, name="tiny-chat")
