"""A deterministic OpenAI-compatible chat-completions server for tests and demos.

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), non-streaming and
streaming (``stream: true`` → server-sent ``chat.completion.chunk`` events), and
``GET /v1/models``. Every request is recorded for assertions.

What it answers is a pure function of the request body: :func:`reply_for` in
:mod:`.fakellm_replies` (the module doc there says how a reply is chosen).

Standard library only, so it runs in any interpreter that has ``crewyard`` on its path.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .fakellm_replies import Answer, Reply, ToolCall, chunks, completion, default_answer, reply_for
from .httpserver import LoopbackServer

__all__ = ["Answer", "FakeLLM", "RecordedRequest", "Reply", "ToolCall", "default_answer", "reply_for"]

_MODELS = ("gpt-4o-mini", "gpt-4o", "fake-llm")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any]
    authorization: str | None
    reply: Reply | None = None

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools the client offered in this request."""
        tools = self.body.get("tools") or []
        names = [t.get("function", {}).get("name", "") for t in tools if isinstance(t, dict)]
        names += [f.get("name", "") for f in self.body.get("functions") or [] if isinstance(f, dict)]
        return names


# ---------------------------------------------------------------------------------------------
# The server


class FakeLLM:
    """The server; ``with FakeLLM() as llm: ... llm.base_url ... llm.requests``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        answer: Answer | None = None,
        tool_args: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.answer = answer
        self.tool_args = tool_args
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server = LoopbackServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def start(self) -> FakeLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakellm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(llm: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI SDK's httpx pool expects

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; requests are recorded instead

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            llm.record(RecordedRequest("GET", path, {}, self.headers.get("Authorization")))
            if path in ("/v1/models", "/models"):
                models = [{"id": m, "object": "model", "created": 0, "owned_by": "crewyard"} for m in _MODELS]
                self._send_json(200, {"object": "list", "data": models})
            elif path in ("/health", "/healthz"):
                self._send_json(200, {"status": "ok"})
            else:
                self._not_found(path)

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
            except ValueError as exc:
                self._send_json(
                    400, {"error": {"message": f"invalid JSON body: {exc}", "type": "invalid_request_error"}}
                )
                return
            if path not in ("/v1/chat/completions", "/chat/completions"):
                llm.record(RecordedRequest("POST", path, body, self.headers.get("Authorization")))
                self._not_found(path)
                return
            reply = reply_for(body, llm.answer, llm.tool_args)
            llm.record(RecordedRequest("POST", path, body, self.headers.get("Authorization"), reply))
            created = int(time.time())
            if not body.get("stream"):
                self._send_json(200, completion(body, reply, created))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # the stream ends when the connection does
            self.end_headers()
            for item in chunks(body, reply, created):
                self.wfile.write(b"data: " + json.dumps(item).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _not_found(self, path: str) -> None:
            self._send_json(404, {"error": {"message": f"fake LLM has no route {path}", "type": "not_found"}})

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m crewyard.testing.fakellm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--answer", default=None, help="fixed answer text (default: derived from the request)"
    )
    args = parser.parse_args(argv)
    llm = FakeLLM(args.host, args.port, answer=args.answer)
    # The one line a script waits for before pointing OPENAI_BASE_URL at us.
    print(f"fake LLM listening on {llm.base_url}", flush=True)
    with suppress(KeyboardInterrupt):
        llm.serve_forever()


if __name__ == "__main__":
    main()
