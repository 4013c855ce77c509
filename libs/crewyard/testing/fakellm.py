"""A deterministic OpenAI-compatible chat-completions server for tests and demos.

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), non-streaming and
streaming (``stream: true`` → server-sent ``chat.completion.chunk`` events), and
``GET /v1/models``. Every request is recorded for assertions.

How a reply is chosen (:func:`reply_for`, a pure function of the request body):

1. The request offers ``tools`` (or legacy ``functions``) and the conversation holds no tool
   result yet → a tool call to the first offered tool, arguments built from its JSON schema.
   This is what CrewAI sends when the model supports native function calling (``gpt-4o-mini``)
   and what ``ChatOpenAI.bind_tools`` sends.
2. The prompt carries CrewAI's ReAct instructions with a tool list ("Action: the action to
   take, only one name of [...]") and no ``Observation:`` yet → ``Thought/Action/Action Input``.
3. ``response_format`` asks for JSON → an object that fits the schema.
4. No tools are offered and the prompt asks for a ``Final Answer`` (CrewAI's text protocol) →
   ``Thought: …\\nFinal Answer: …``.
5. Otherwise → the plain answer text.

The answer text is deterministic: the configured ``answer`` (string or function of the body),
or a short default that names the task and quotes the last tool result, so a test can see that
a tool's output really travelled back into the conversation.

Standard library only, so it runs in any interpreter that has ``crewyard`` on its path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = str | Callable[[dict[str, Any]], str]

_REACT_TOOLS_RE = re.compile(r"only one name of \[([^\]]*)\]")
_REACT_RESULT_RE = re.compile(r"Observation:(?! the result of the action)")
_MODELS = ("gpt-4o-mini", "gpt-4o", "fake-llm")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the OpenAI API sends it


@dataclass(frozen=True)
class Reply:
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    legacy_function: bool = False  # answer with ``function_call`` (request used ``functions``)

    @property
    def finish_reason(self) -> str:
        if self.tool_calls:
            return "function_call" if self.legacy_function else "tool_calls"
        return "stop"


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
# Choosing a reply


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages") or [] if isinstance(m, dict)]


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [_text(m.get("content")) for m in messages if m.get("role") in ("tool", "function")]


def _task_line(messages: list[dict[str, Any]]) -> str:
    """A short, stable description of what was asked: the first meaningful user line."""
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    for text in users[:1]:
        for line in text.splitlines():
            line = line.strip().removeprefix("Current Task:").strip()
            if line:
                return line[:120]
    return "the question"


def default_answer(body: dict[str, Any]) -> str:
    messages = _messages(body)
    lines = [f"Fake LLM answer about: {_task_line(messages)}"]
    results = _tool_results(messages)
    observations = [
        _text(m.get("content")) for m in messages if _REACT_RESULT_RE.search(_text(m.get("content")))
    ]
    if observations:
        results.append(_REACT_RESULT_RE.split(observations[-1])[-1])
    if results:
        lines.append(f"Tool result used: {' '.join(results[-1].split())[:200]}")
    return "\n".join(lines)


def _value_for(schema: dict[str, Any], name: str, hint: str) -> Any:
    """A deterministic example value for a JSON schema (enough for tool arguments)."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key) or [] if isinstance(s, dict) and s.get("type") != "null"]
        if options:
            return _value_for(options[0], name, hint)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _value_for(v if isinstance(v, dict) else {}, k, hint) for k, v in props.items()}
    if kind == "array":
        items = schema.get("items")
        return [_value_for(items if isinstance(items, dict) else {}, name, hint)]
    if kind == "integer":
        return 3
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return hint


def _call_id(body: dict[str, Any], name: str) -> str:
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode() + name.encode())
    return "call_" + digest.hexdigest()[:24]


def _native_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools") or []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            return fn["name"], fn.get("parameters") or {}
    for fn in body.get("functions") or []:
        if isinstance(fn, dict) and fn.get("name"):
            return fn["name"], fn.get("parameters") or {}
    return None


def _react_schema(prompt: str, name: str) -> dict[str, Any]:
    """The argument schema CrewAI prints for a tool ("Tool Name: x\nTool Arguments: {...}")."""
    marker = f"Tool Name: {name}\nTool Arguments: "
    start = prompt.find(marker)
    if start < 0:
        return {"type": "object", "properties": {"input": {"type": "string"}}}
    try:
        schema, _ = json.JSONDecoder().raw_decode(prompt, start + len(marker))
    except ValueError:
        return {"type": "object", "properties": {"input": {"type": "string"}}}
    if isinstance(schema, dict) and "properties" not in schema and "type" not in schema:
        schema = {"type": "object", "properties": schema}  # older CrewAI: a bare {arg: {type}} map
    return schema if isinstance(schema, dict) else {}


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema") or {"type": "object"}
    if fmt.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}}
    return None


def reply_for(
    body: dict[str, Any],
    answer: Answer | None = None,
    tool_args: dict[str, dict[str, Any]] | None = None,
) -> Reply:
    """The reply the fake model gives to one chat-completions request (see the module doc)."""
    messages = _messages(body)
    text = answer(body) if callable(answer) else answer or default_answer(body)
    hint = _task_line(messages)
    all_text = "\n".join(_text(m.get("content")) for m in messages)

    native = _native_tool(body)
    if native is not None and not _tool_results(messages) and body.get("tool_choice") != "none":
        name, params = native
        args = (tool_args or {}).get(name) or _value_for(params, name, hint)
        call = ToolCall(id=_call_id(body, name), name=name, arguments=json.dumps(args))
        return Reply(tool_calls=(call,), legacy_function="functions" in body and "tools" not in body)

    react_tools = _REACT_TOOLS_RE.search(all_text)
    if react_tools and not _REACT_RESULT_RE.search(all_text):
        name = react_tools.group(1).split(",")[0].strip()
        args = (tool_args or {}).get(name) or _value_for(_react_schema(all_text, name), name, hint)
        return Reply(
            content=f"Thought: I should use {name}.\nAction: {name}\nAction Input: {json.dumps(args)}"
        )

    schema = _json_schema(body)
    if schema is not None:
        return Reply(content=json.dumps(_value_for(schema, "answer", text)))
    if native is None and "Final Answer" in all_text:
        # CrewAI's text protocol; with native tools offered, CrewAI takes the text verbatim instead.
        return Reply(content=f"Thought: I now can give a great answer\nFinal Answer: {text}")
    return Reply(content=text)


# ---------------------------------------------------------------------------------------------
# Wire formats


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in _messages(body))
    completion = len((reply.content or "").split()) + sum(len(c.arguments) // 4 for c in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _message(reply: Reply) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls and reply.legacy_function:
        call = reply.tool_calls[0]
        msg["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif reply.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return msg


def completion(body: dict[str, Any], reply: Reply, created: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake" + _call_id(body, "completion")[5:17],
        "object": "chat.completion",
        "created": created,
        "model": body.get("model") or "fake-llm",
        "system_fingerprint": "fp_fakellm",
        "choices": [
            {"index": 0, "message": _message(reply), "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": _usage(body, reply),
    }


def chunks(body: dict[str, Any], reply: Reply, created: int) -> Iterator[dict[str, Any]]:
    """The streamed form of a reply: role, content pieces / tool-call deltas, finish, usage."""
    base = {
        "id": "chatcmpl-fake" + _call_id(body, "completion")[5:17],
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.get("model") or "fake-llm",
        "system_fingerprint": "fp_fakellm",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    if reply.content:
        # Several pieces, so clients that assemble deltas are really exercised.
        words = reply.content.split(" ")
        step = max(1, len(words) // 4)
        for i in range(0, len(words), step):
            piece = " ".join(words[i : i + step])
            yield chunk({"content": piece if i == 0 else " " + piece})
    if reply.tool_calls and reply.legacy_function:
        call = reply.tool_calls[0]
        yield chunk({"function_call": {"name": call.name, "arguments": ""}})
        yield chunk({"function_call": {"arguments": call.arguments}})
    for index, call in enumerate(() if reply.legacy_function else reply.tool_calls):
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
    yield chunk({}, reply.finish_reason)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(body, reply)}


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
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
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
