"""Server addresses of remote models: parsed and checked where they are registered (models add-remote) and
where they are used (inference/remote.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from misalign_tui.core.errors import UserError
from misalign_tui.core.text import printable


@dataclass(frozen=True)
class Endpoint:
    url: str            # as the user gave it, without a trailing slash
    scheme: str
    host: str
    port: int
    base_path: str      # "" or "/prefix", without /v1

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        u = url.strip().rstrip("/")
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"--url {url!r}: give an http:// or https:// address, e.g. http://127.0.0.1:8080")
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a port that is not a number from 0 to 65535
            raise UserError(f"--url {printable(url)!r}: the port must be a number from 1 to 65535, e.g. "
                            "http://127.0.0.1:8080") from None
        return cls(u, parts.scheme, parts.hostname, port, path)


def parse_urls(urls: str | Sequence[str]) -> list[Endpoint]:
    """One or more server addresses; a string may hold several separated by spaces (the models.url column)."""
    items = urls.split() if isinstance(urls, str) else [w for u in urls for w in u.split()]
    if not items:
        raise UserError("remote model: no server URL given (--url)")
    return [Endpoint.parse(u) for u in items]
