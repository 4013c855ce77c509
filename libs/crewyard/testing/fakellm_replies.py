"""What the fake model answers, and how it is written on the wire: pure functions of the request
body (:mod:`.fakellm` serves them).

How a reply is chosen (:func:`reply_for`):

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

A reply goes out whole (:func:`completion`) or streamed (:func:`chunks`: the
``chat.completion.chunk`` events). Standard library only, like the server.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Answer = str | Callable[[dict[str, Any]], str]

_REACT_TOOLS_RE = re.compile(r"only one name of \[([^\]]*)\]")
_REACT_RESULT_RE = re.compile(r"Observation:(?! the result of the action)")


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
