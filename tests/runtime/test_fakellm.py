"""The fake LLM speaks the OpenAI wire format well enough for the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from openai import OpenAI

from crewyard.testing import FakeLLM, reply_for

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client(fake_llm: FakeLLM) -> Iterator[OpenAI]:
    with OpenAI(base_url=fake_llm.base_url, api_key="fake", max_retries=0) as openai_client:
        yield openai_client


def test_plain_completion(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content == "Fake LLM answer about: Hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens > 0


def test_tool_call_until_a_tool_result_is_in_the_conversation(client: OpenAI) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and calls
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Weather in Oslo?", "days": 3, "unit": "c"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"},
    ]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    assert (
        second.choices[0].message.content
        == "Fake LLM answer about: Weather in Oslo?\nTool result used: sunny, 21C"
    )


def test_streaming_assembles_to_the_same_reply(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Tell me about streams"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Fake LLM answer about: Tell me about streams"
    assert chunks[-1].usage is not None


def test_streamed_tool_call(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Oslo"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(arguments)["city"], finish) == ("get_weather", "Oslo", "tool_calls")


def test_models_and_recorded_requests(client: OpenAI, fake_llm: FakeLLM) -> None:
    fake_llm.clear()
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert [(r.method, r.path) for r in fake_llm.requests] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]
    assert fake_llm.chat_requests()[0].authorization == "Bearer fake"


def test_crewai_text_protocol_replies() -> None:
    prompt = (
        "You ONLY have access to the following tools:\n\nTool Name: shout\nTool Arguments: "
        '{"properties": {"text": {"type": "string"}}, "required": ["text"], "type": "object"}\n'
        "Tool Description: Upper-case\n\n"
        "Action: the action to take, only one name of [shout], just the name\n"
        "Once all necessary information is gathered:\nThought: I now know the final answer\nFinal Answer: ..."
    )
    body = {"messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "Shout hi"}]}
    assert (
        reply_for(body).content
        == 'Thought: I should use shout.\nAction: shout\nAction Input: {"text": "Shout hi"}'
    )
    body["messages"].append({"role": "assistant", "content": "Action: shout\nObservation: SHOUT HI"})
    assert reply_for(body).content == (
        "Thought: I now can give a great answer\nFinal Answer: Fake LLM answer about: Shout hi\n"
        "Tool result used: SHOUT HI"
    )


def test_json_response_format_gets_an_object_of_the_schema() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "number"}}}
    body = {
        "messages": [{"role": "user", "content": "Rate it"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    }
    assert json.loads(reply_for(body, answer="Great").content or "") == {"title": "Great", "score": 1.5}
