"""Real inference servers on loopback for the remote-backend tests, and a proxy for faults we cannot cause.

``LlamaServer`` runs llama-cpp-python's own server (its ``[server]`` extra) as a child process on 127.0.0.1 and a
free port; ``LlamaCppServer`` runs llama.cpp's own ``llama-server`` binary (scripts/build_llama_server.sh; tests
skip without it). ``FaultProxy`` sits between the backend and a server to answer 503s, count requests or drop the
prompt log-probabilities a server without echo support would not send.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on loopback; started in __init__, stopped (killed if need be) by stop()."""

    name = "llama_cpp.server"

    def __init__(self, model: Path, *, port: int | None = None, logits_all: bool = True, alias: str | None = None,
                 api_key: str | None = None, log: Path | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", LOOPBACK,
                "--port", str(self.port), "--n_ctx", "1024", "--n_threads", "1",
                "--logits_all", "true" if logits_all else "false"]
        if alias:
            args += ["--model_alias", alias]
        if api_key:
            args += ["--api_key", api_key]
        self._start(args, log, api_key)

    def _start(self, args: list[str], log: Path | None, api_key: str | None) -> None:
        self.log = log or Path(os.devnull)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._log_fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log_fh, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self._wait_ready(api_key)

    def _wait_ready(self, api_key: str | None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                c = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
                c.request("GET", "/v1/models", headers=headers)
                if c.getresponse().status == 200:
                    c.close()
                    return
                c.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /v1/models within {timeout} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no graceful shutdown."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_fh.close()


class LlamaCppServer(LlamaServer):
    """llama.cpp's own ``llama-server`` binary on loopback, one slot, one thread."""

    name = "llama-server"

    def __init__(self, binary: Path, model: Path, *, port: int | None = None, alias: str | None = None,
                 log: Path | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        args = [str(binary), "-m", str(model), "--host", LOOPBACK, "--port", str(self.port), "-c", "1024",
                "-t", "1", "-np", "1", "--no-warmup"]
        if alias:
            args += ["--alias", alias]
        self._start(args, log, None)


class FaultProxy:
    """A loopback HTTP proxy to ``upstream`` that can fail the first N requests, or answer without echo."""

    def __init__(self, upstream: str, *, fail_first: int = 0, fail_status: int = 503, fail_always: bool = False,
                 strip_echo: bool = False, on_request: Callable[[int], None] | None = None,
                 edit_request: Callable[[int, dict], dict] | None = None,
                 edit_answer: Callable[[int, dict], dict] | None = None) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.fail_always = fail_always
        self.strip_echo = strip_echo
        self.on_request = on_request  # called with the request's number (from 1) before it is forwarded
        # /v1/completions only: (request number, JSON body) -> the body forwarded; (number, answer) -> answer
        self.edit_request = edit_request
        self.edit_answer = edit_answer
        self.completions = 0
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy.fail_always or proxy.failed < proxy.fail_first
                    if fail:
                        proxy.failed += 1
                    number = proxy.requests
                if fail:
                    self._send(proxy.fail_status, b'{"error": {"message": "overloaded (test proxy)"}}')
                    return
                if proxy.on_request is not None:
                    proxy.on_request(number)
                completion = self.path.endswith("/completions") and body is not None
                if completion:
                    with proxy._lock:
                        proxy.completions += 1
                        number = proxy.completions
                    if proxy.edit_request is not None:
                        body = json.dumps(proxy.edit_request(number, json.loads(body))).encode()
                host, _, port = proxy.upstream.partition(":")
                c = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                try:
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                except OSError:
                    self._send(502, b'{"error": {"message": "upstream unreachable (test proxy)"}}')
                    return
                finally:
                    c.close()
                if proxy.strip_echo and self.path.endswith("/completions") and r.status == 200:
                    data = _without_echo(data, json.loads(body or b"{}"))
                if completion and proxy.edit_answer is not None and r.status == 200:
                    data = json.dumps(proxy.edit_answer(number, json.loads(data))).encode()
                self._send(r.status, data)

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _without_echo(data: bytes, request: dict) -> bytes:
    """What a server that ignores ``echo`` sends: only the generated tokens' log-probabilities."""
    obj = json.loads(data)
    gen = int(obj.get("usage", {}).get("completion_tokens", 1))
    for ch in obj.get("choices", []):
        lp = ch.get("logprobs")
        if lp:
            for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                if isinstance(lp.get(k), list):
                    lp[k] = lp[k][len(lp[k]) - gen:]
        if request.get("echo") and isinstance(ch.get("text"), str):
            ch["text"] = ch["text"][len(request.get("prompt", "")):]
    return json.dumps(obj).encode()
