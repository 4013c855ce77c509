"""The typed client: contract types out, one error class per kind of failure, pagination, and
event streams that resume with Last-Event-ID — sync and async alike."""

from __future__ import annotations

import io

import pytest

from crewyard.client import (
    AsyncClient,
    BadRequest,
    Client,
    ClientError,
    Conflict,
    NotFound,
    Run,
    TransportError,
    Unavailable,
)
from crewyard.errors import CrewyardError
from crewyard.testing.fakeapi import FakeApi, Reply, Sse

RUN = "run_01j9zq6m8k2v3w4x5y6z7a8b9c"


def _run(run_id: str, **fields: object) -> dict[str, object]:
    return {
        "id": run_id,
        "run_id": run_id,
        "project": "demo",
        "deployment_id": "dep_1",
        "status": "succeeded",
        "input": {},
        "created_at": "2026-01-01T00:00:00+00:00",
        **fields,
    }


def test_answers_are_contract_types_and_a_create_answer_with_only_run_id_reads_well(api: FakeApi):
    api.route("POST", "/v1/runs", Reply(202, {"run_id": RUN, "status": "pending"}))
    api.route("GET", f"/v1/runs/{RUN}", Reply(200, _run(RUN, output={"answer": 42}, duration_ms=900)))
    with Client(api.url) as client:
        created = client.create_run(project="demo", input={"topic": "AI"})
        run = client.get_run(RUN)
    assert isinstance(created, Run) and (created.id, created.run_id, created.status) == (RUN, RUN, "pending")
    assert (run.output, run.duration_ms, run.status) == ({"answer": 42}, 900, "succeeded")
    (post,) = api.calls("POST", "/v1/runs")
    assert post.json() == {"project": "demo", "input": {"topic": "AI"}}
    assert post.headers["idempotency-key"]  # every create is safe to send again


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, BadRequest), (404, NotFound), (409, Conflict), (422, BadRequest), (503, Unavailable)],
)
def test_each_kind_of_failure_has_its_class_and_the_apis_message(api: FakeApi, status: int, kind: type):
    api.route(
        "GET", f"/v1/runs/{RUN}", Reply(status, {"error": {"code": "some_code", "message": "it went wrong"}})
    )
    with Client(api.url) as client, pytest.raises(kind) as caught:
        client.get_run(RUN)
    assert (caught.value.status, caught.value.code, str(caught.value)) == (
        status,
        "some_code",
        "it went wrong",
    )
    assert isinstance(caught.value, CrewyardError)


def test_a_server_that_is_not_there_and_a_bad_url_are_transport_errors(dead_url: str):
    with pytest.raises(TransportError, match="cannot reach the crewyard API"), Client(dead_url) as client:
        client.list_projects()
    with pytest.raises(TransportError, match="invalid API URL"):
        Client("localhost:8080")
    with pytest.raises(TransportError, match="from 1 to 65535"):
        Client("http://127.0.0.1:99999")
    with pytest.raises(TransportError, match="not a host name"):  # was an UnicodeError when used
        Client("http://" + "a" * 64 + ".example")
    Client("http://bücher.example:8080").close()  # a name the IDNA codec takes is fine


def test_iter_runs_follows_the_cursor_through_every_page(api: FakeApi):
    pages = {
        None: {"runs": [_run("run_3"), _run("run_2")], "next_cursor": "run_2"},
        "run_2": {"runs": [_run("run_1")], "next_cursor": None},
    }
    api.route(
        "GET", "/v1/runs", lambda request: Reply(200, pages[(request.query.get("cursor") or [None])[0]])
    )
    with Client(api.url) as client:
        ids = [run.id for run in client.iter_runs(project="demo", page_size=2)]
    assert ids == ["run_3", "run_2", "run_1"]
    assert [r.query["limit"] for r in api.calls("GET", "/v1/runs")] == [["2"], ["2"]]


def test_run_events_resume_with_last_event_id_after_a_drop(api: FakeApi):
    events = [
        (1, "run.started", {}),
        (2, "log", {"message": "a"}),
        (3, "run.completed", {"status": "succeeded"}),
    ]
    stream = Sse(events, drop_after=1, aggregate_id=RUN)
    api.route("GET", f"/v1/runs/{RUN}/events", stream)
    api.route("GET", f"/v1/runs/{RUN}", Reply(200, _run(RUN)))
    with Client(api.url) as client:
        seen = [(m.id, m.decode().type) for m in client.run_events(RUN)]
    assert seen == [("1", "run.started"), ("2", "log"), ("3", "run.completed")]
    assert [r.headers.get("last-event-id") for r in api.calls("GET", f"/v1/runs/{RUN}/events")] == [None, "1"]


def test_artifacts_stream_into_a_file(api: FakeApi):
    api.route(
        "GET", f"/v1/runs/{RUN}/artifacts", Reply(200, {"artifacts": [{"name": "out/report.md", "size": 3}]})
    )
    api.route(
        "GET", f"/v1/runs/{RUN}/artifacts/out/report.md", Reply(200, raw=b"abc", content_type="text/markdown")
    )
    with Client(api.url) as client:
        (artifact,) = client.list_artifacts(RUN)
        into = io.BytesIO()
        size = client.download_artifact(RUN, artifact.name, into)
    assert (artifact.name, size, into.getvalue()) == ("out/report.md", 3, b"abc")


async def test_the_async_client_does_the_same(api: FakeApi):
    events = [(1, "run.started", {}), (2, "run.failed", {"error_message": "boom"})]
    api.route("GET", f"/v1/runs/{RUN}/events", Sse(events, drop_after=1, aggregate_id=RUN))
    api.route("GET", f"/v1/runs/{RUN}", Reply(200, _run(RUN, status="failed", error_message="boom")))
    api.route(
        "GET",
        "/v1/projects/nope",
        Reply(404, {"error": {"code": "not_found", "message": "project nope not found"}}),
    )
    async with AsyncClient(api.url) as client:
        seen = [m.decode().type async for m in client.run_events(RUN)]
        run = await client.get_run(RUN)
        with pytest.raises(NotFound, match="project nope not found"):
            await client.get_project("nope")
    assert seen == ["run.started", "run.failed"]
    assert (run.status, run.error_message) == ("failed", "boom")


def test_an_answer_the_contract_cannot_read_is_one_clear_error(api: FakeApi):
    api.route("GET", "/v1/projects", Reply(200, {"projects": [{"no_name": True}]}))
    with Client(api.url) as client, pytest.raises(ClientError, match="cannot read"):
        client.list_projects()
