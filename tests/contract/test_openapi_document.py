"""The OpenAPI document describes the whole API: every body a route reads has its schema (the
upload its gzip), every success answer its schema (event streams as ``text/event-stream``,
downloads as bytes), so clients can be generated and property-based tests have something to
work from. Which routes exist and who may call them: ``tests/gateway/test_access_matrix.py``."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from litestar import Litestar

from crewyard.contract.runs import MAX_RUNS_PAGE, RunStatus
from crewyard.gateway import create_app
from crewyard.settings import Settings

METHODS = ("get", "post", "put", "patch", "delete")
WITH_BODY = ("post", "put", "patch")
#: The answers that are streams of server-sent events, and the one that is a file.
SSE_ROUTES = {
    "/v1/runs/{run_id}/events",
    "/v1/deployments/{dep_id}/build-log",
    "/v1/projects/{project}/events",
    "/v1/threads/{thread_id}/events",
    "/v1/events",
}
UPLOAD = "/v1/projects/{project}/deployments"
DOWNLOAD = "/v1/runs/{run_id}/artifacts/{name}"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    return create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def document(app: Litestar) -> dict[str, Any]:
    doc: dict[str, Any] = app.openapi_schema.to_schema()
    return doc


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of the API's own routes (not the document's viewers)."""
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        if not path.startswith("/schema")
        for method, op in item.items()
        if method in METHODS
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def _meaningful(document: dict[str, Any], schema: dict[str, Any] | None) -> bool:
    """A schema that says something (a type, properties, a reference or a union of those)."""
    if not schema:
        return False
    schema = _resolve(document, schema)
    if "oneOf" in schema or "anyOf" in schema:
        return all(_meaningful(document, s) for s in schema.get("oneOf", schema.get("anyOf")))
    return "type" in schema or "properties" in schema


def test_every_route_that_takes_a_body_documents_its_schema(document: dict[str, Any]):
    missing = []
    for method, path, op in _operations(document):
        if method not in WITH_BODY:
            continue
        body = op.get("requestBody")
        content = (body or {}).get("content", {})
        if not content or not all(_meaningful(document, m.get("schema")) for m in content.values()):
            missing.append(f"{method.upper()} {path}")
    assert not missing, f"routes whose request body is not documented: {missing}"


def test_json_bodies_are_objects_and_optional_ones_say_so(document: dict[str, Any]):
    ops = {(m, p): op for m, p, op in _operations(document)}
    for (method, path), op in ops.items():
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        schema = _resolve(document, content["application/json"]["schema"])
        kinds = [_resolve(document, s) for s in schema.get("oneOf", [schema])]
        assert any(k.get("type") == "object" for k in kinds), f"{method} {path}: {schema}"
        if any(k.get("type") == "null" for k in kinds):  # no body at all is fine: not required
            assert op["requestBody"]["required"] is False, f"{method} {path}"
    # Actions that need nothing but their path still say what they take: nothing, or {}.
    for method, path in (
        ("post", "/v1/runs/{run_id}/cancel"),
        ("post", "/v1/projects/{project}/schedules/{schedule_id}/pause"),
        ("post", "/v1/projects/{project}/webhooks/{webhook_id}/rotate-secret"),
    ):
        assert ops[method, path]["requestBody"]["required"] is False


def test_the_upload_documents_its_gzip_body(document: dict[str, Any]):
    body = document["paths"][UPLOAD]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"] == {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}


def test_every_success_answer_has_a_schema(document: dict[str, Any]):
    missing = []
    for method, path, op in _operations(document):
        for status, answer in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = answer.get("content") or {}
            if not content or not all(_meaningful(document, m.get("schema")) for m in content.values()):
                missing.append(f"{method.upper()} {path} {status}")
    assert not missing, f"success answers without a schema: {missing}"


def test_a_repeated_request_is_documented_as_the_first_one_answered(document: dict[str, Any]):
    # A repeat with the same Idempotency-Key answers 200 with what the first request's 201 or 202
    # answered (a row insert: one row or {"rows": [...]}, as the first was).
    repeats = 0
    for method, path, op in _operations(document):
        answers = op["responses"]
        first = next((answers[s] for s in ("201", "202") if s in answers), None)
        if method != "post" or first is None or "200" not in answers:
            continue
        repeats += 1
        assert answers["200"]["content"] == first["content"], f"{method.upper()} {path}"
    assert repeats >= 3  # runs, uploads, row inserts


def test_event_streams_and_downloads_are_documented_as_what_they_send(document: dict[str, Any]):
    paths = document["paths"]
    for path in SSE_ROUTES:
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"], path
        event = _resolve(document, content["text/event-stream"]["schema"])
        assert {"id", "type", "data", "aggregate_id"} <= set(event["properties"]), path
    download = paths[DOWNLOAD]["get"]["responses"]
    for status in ("200", "206"):
        assert download[status]["content"] == {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
        }


def test_the_idempotency_key_is_a_documented_header(document: dict[str, Any]):
    for path in ("/v1/runs", UPLOAD, "/webhooks/runs/{token}"):
        params = document["paths"][path]["post"].get("parameters", [])
        assert [p["in"] for p in params if p["name"] == "Idempotency-Key"] == ["header"], path


def test_the_run_listings_filters_are_documented(document: dict[str, Any]):
    params = {p["name"]: p for p in document["paths"]["/v1/runs"]["get"].get("parameters", [])}
    assert set(params) == {"project", "deployment_id", "status", "limit", "cursor", "full"}
    assert all(p["in"] == "query" and p["description"] for p in params.values())
    assert params["status"]["schema"]["enum"] == list(get_args(RunStatus))
    assert (params["limit"]["schema"]["minimum"], params["limit"]["schema"]["maximum"]) == (1, MAX_RUNS_PAGE)
    assert params["full"]["schema"]["type"] == "boolean"


#: What a handler reads from the request itself: ``request.query_params.get("x")``, ``q.get("x")``,
#: ``q.getall("x")``; ``resume_after(request)`` reads ``after`` and ``Last-Event-ID``.
_READS = re.compile(r'(?:query_params|\bq)\.(?:get|getall)\(\s*"([A-Za-z_-]+)"')


def test_every_query_a_handler_reads_itself_is_documented(app: Litestar, document: dict[str, Any]):
    checked = 0
    for route in app.routes:
        path = re.sub(r":[a-z]+}", "}", route.path)
        if path not in document["paths"]:
            continue  # the console's pages and the document's own viewers
        for handler in getattr(route, "route_handlers", []):
            source = inspect.getsource(handler.fn)
            wanted = set(_READS.findall(source))
            if "resume_after(request)" in source:
                wanted |= {"after", "Last-Event-ID"}
            for method in handler.http_methods & {m.upper() for m in METHODS}:
                op = document["paths"][path][method.lower()]
                named = {p["name"] for p in op.get("parameters", [])}
                assert wanted <= named, (method, path, sorted(wanted - named))
                checked += bool(wanted)
    assert checked >= 8, checked


#: Answers whose shape is not the API's to fix: a document of its own, a row of a user's table.
FREE_FORM = {
    ("get", "/v1/asyncapi.json"),
    ("get", "/v1/tables/{table_id}/rows/{row_id}"),
    ("post", "/v1/tables/{table_id}/rows"),
    ("patch", "/v1/tables/{table_id}/rows/{row_id}"),
}


def test_json_answers_are_contract_types(document: dict[str, Any]):
    untyped = []
    for method, path, op in _operations(document):
        for status, answer in op["responses"].items():
            media = (answer.get("content") or {}).get("application/json")
            if not status.startswith("2") or media is None or (method, path) in FREE_FORM:
                continue
            schema = media["schema"]
            if not all("$ref" in s for s in schema.get("oneOf", [schema]) if s.get("type") != "null"):
                untyped.append(f"{method.upper()} {path} {status}")
    assert not untyped, f"JSON answers without a contract type: {untyped}"


def test_errors_are_documented_as_the_error_body(document: dict[str, Any]):
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    for method, path, op in _operations(document):
        assert op["responses"]["default"]["content"]["application/json"]["schema"] == error, path
        for status, answer in op["responses"].items():
            if status.startswith("4"):
                assert answer["content"]["application/json"]["schema"] == error, f"{method} {path} {status}"


def test_a_trigger_urls_answer_names_the_version_it_runs(document: dict[str, Any]):
    # As the compatible product's 202 does: run_id, version_id, version_number and status.
    op = document["paths"]["/webhooks/runs/{token}"]["post"]
    schema = _resolve(document, op["responses"]["202"]["content"]["application/json"]["schema"])
    assert {"run_id", "version_id", "version_number", "status"} <= set(schema["required"])
