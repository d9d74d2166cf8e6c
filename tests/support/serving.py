"""Test helpers around real engines: a directory served over HTTP on 127.0.0.1, and what an
image's layers and size are (inspected with the Docker SDK)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _BasicAuthHandler(_QuietHandler):
    expected = ""  # "Basic <base64 of user:password>"

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="channel"')
            self.end_headers()
            return
        super().do_GET()

    do_HEAD = do_GET


@contextlib.contextmanager
def serve_directory(
    directory: Path, port: int = 0, credentials: tuple[str, str] | None = None
) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 for the duration of the block; yields the URL.
    With `credentials` (user, password), every request without them gets 401."""
    import base64

    base: type[_QuietHandler] = _QuietHandler
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        base = type("_Auth", (_BasicAuthHandler,), {"expected": f"Basic {token}"})
    handler = functools.partial(base, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def layers(client: Any, ref: str) -> list[str]:
    """The image's filesystem layer digests (RootFS), bottom first."""
    return list(client.api.inspect_image(ref)["RootFS"]["Layers"])


def size(client: Any, ref: str) -> int:
    return int(client.api.inspect_image(ref)["Size"])
