"""A local HTTP server answering like a public API, for collectors' tests (pulls read it)."""

from __future__ import annotations

from collections.abc import Callable


class StubServer:
    """A local HTTP server answering like a public API: ``respond(method, path, body)``
    returns ``(status, json_body)``; every request is recorded."""

    def __init__(self) -> None:
        import http.server
        import threading

        stub = self
        self.requests: list[tuple[str, str, dict]] = []
        self.respond: Callable[[str, str, dict], tuple[int, dict]] = lambda m, p, b: (404, {})

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                import json

                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                stub.requests.append((self.command, self.path, body))
                status, answer = stub.respond(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
