"""A real OpenAI-compatible chat server on loopback, for tests that need a model server
another process can reach (``cra harness run --endpoint``), answered by a function."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (request body, number of this POST from 1) -> the assistant's text
Answer = Callable[[dict[str, Any], int], str]


class ChatServer:
    """``GET /v1/models`` lists ``model``; each ``POST`` is answered with ``answer(body, n)``
    after ``delay`` seconds; after answering POST number ``stop_after`` nothing listens any
    more (a server that dies mid-run). ``posts`` counts the POSTs; ``stop()`` shuts it down."""

    def __init__(self, answer: Answer, *, model: str = "scripted", delay: float = 0.0,
                 stop_after: int | None = None):
        self.posts = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": model}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    server.posts += 1
                    n = server.posts
                if delay:
                    threading.Event().wait(delay)
                self._send({"choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": answer(body, n)}}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                if n == stop_after:
                    threading.Thread(target=server.stop, daemon=True).start()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
