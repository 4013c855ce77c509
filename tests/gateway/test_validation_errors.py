"""A body its contract type refuses is a 400 in the API's error format, with a sentence that names
the field — never Litestar's own shape, never a 500 (however deep or odd the JSON)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient

from crewyard import contract
from crewyard.contract.common import NoFields
from crewyard.contract.projects import EnvValue, Limits
from crewyard.contract.runs import RunCreate
from crewyard.contract.tables import TableCreate
from crewyard.contract.triggers import TriggerCreate
from crewyard.eventstore import StoreUnavailable
from crewyard.gateway.context import ApiRequest, IdempotencyKey
from crewyard.gateway.errors import _FORMS, HANDLERS


@post("/runs", status_code=200)
async def create(data: RunCreate, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data), "key": idempotency_key}


@post("/env", status_code=200)
async def env(data: EnvValue) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data)}


@post("/limits", status_code=200)
async def limits(data: Limits | None = None) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data)}


@post("/triggers", status_code=200)
async def triggers(data: TriggerCreate) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data)}


@post("/tables", status_code=200)
async def tables(data: TableCreate) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data)}


@post("/cancel", status_code=200)
async def cancel(data: NoFields | None = None) -> dict[str, Any]:
    return {"body": msgspec.to_builtins(data)}


@post("/outage/{token:str}", status_code=200)
async def outage(token: str) -> None:
    raise StoreUnavailable("cannot read t.evt.acme.run.>: NoServersError(nats://10.1.2.3:4222)")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        [create, env, limits, triggers, tables, cancel, outage],
        exception_handlers=HANDLERS,
        request_class=ApiRequest,
    )
    with TestClient(app) as c:
        yield c


def _refused(client: TestClient[Litestar], path: str, body: bytes, **headers: str) -> str:
    r = client.post(path, content=body, headers={"Content-Type": "application/json", **headers})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request"
    return str(error["message"])


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/runs", b'{"project": "p", "input": [1, 2]}', "input must be a JSON object"),
        ("/runs", b'{"project": "p", "input": null}', "input must be a JSON object"),
        ("/runs", b'{"project": 5}', "project must be a string"),
        ("/runs", b'{"project": ""}', "project must have at least 1 characters"),
        ("/runs", b'{"project": "p", "timeout_s": 0}', "timeout_s must be positive and at most 2.592e+06"),
        ("/runs", b'{"project": "p", "timeout_s": 1e12}', "timeout_s must be positive and at most"),
        ("/runs", b'"x"', "request body must be a JSON object"),
        ("/runs", b"", "request body must be a JSON object"),
        ("/runs", b"{nope", "request body is not valid JSON"),
        ("/runs", b"[" * 5000 + b"]" * 5000, "request body is nested deeper than 64 levels"),
        ("/runs", b'{"input": ' + b'{"a": ' * 70 + b"1" + b"}" * 71, "nested deeper than 64 levels"),
        ("/runs", b'{"project": "p", "input": {"n": 99999999999999999999999}}', "does not fit in 64 bits"),
        ("/env", b"{}", "value is required"),
        ("/env", b'{"value": 5}', "value must be a string"),
        ("/limits", b'{"max_concurrent_runs": 0}', "max_concurrent_runs must be between 1 and 100000"),
        (
            "/tables",
            b'{"project": "p", "name": "' + b"n" * 101 + b'", "columns": []}',
            "name must have at most 100",
        ),
        ("/limits", b'{"max_concurrent_runs": true}', "max_concurrent_runs must be a whole number"),
        (
            "/tables",
            b'{"project": "p", "name": "t", "columns": [{"type": "text"}]}',
            "columns[0].name is required",
        ),
        ("/triggers", b'{"name": "t", "nope": 1}', "unknown field nope"),
        (
            "/triggers",
            b'{"name": "t", "deployment": "garbage"}',
            "deployment must be a version id (dep_ and 26 lower-case letters and digits)",
        ),
        ("/cancel", b"[]", "request body must be a JSON object"),
    ],
)
def test_refused_bodies_name_what_is_wrong(
    client: TestClient[Litestar], path: str, body: bytes, message: str
):
    assert message in _refused(client, path, body)


def _patterns(t: Any, seen: set[type]) -> set[str]:
    """The string patterns anywhere in a type (fields of structs, items, unions), as msgspec sees it."""
    found = {t.pattern} if isinstance(t, mi.StrType) and t.pattern else set()
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return found
        seen.add(t.cls)
        for f in t.fields:
            found |= _patterns(f.type, seen)
    for inner in [getattr(t, a) for a in ("item_type", "key_type", "value_type") if hasattr(t, a)]:
        found |= _patterns(inner, seen)
    for inner in [*getattr(t, "types", ()), *getattr(t, "item_types", ())]:
        found |= _patterns(inner, seen)
    return found


def test_every_pattern_of_the_contract_is_said_in_words() -> None:
    """A refused value is told what it must look like in words, never as a regular expression."""
    patterns: set[str] = set()
    seen: set[type] = set()
    for info in pkgutil.iter_modules(contract.__path__):
        module = importlib.import_module(f"{contract.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, msgspec.Struct):
                patterns |= _patterns(mi.type_info(value), seen)
    assert len(seen) > 20 and patterns and not patterns - set(_FORMS), sorted(patterns - set(_FORMS))


def test_a_body_that_may_be_left_out(client: TestClient[Litestar]):
    for body in (b"", b"  ", b"null"):
        r = client.post("/limits", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {"body": None}, (body, r.text)
    assert client.post("/cancel", json={"reason": "ignored"}).json() == {"body": {}}


def test_the_idempotency_key_header_is_checked(client: TestClient[Litestar]):
    body = b'{"project": "p"}'
    ok = client.post("/runs", content=body, headers={"Idempotency-Key": "k-1"})
    assert ok.json()["key"] == "k-1"
    message = _refused(client, "/runs", body, **{"Idempotency-Key": "k" * 256})
    assert message == "Idempotency-Key must be 1 to 255 printable ASCII characters"


def test_an_outage_answers_503_without_what_the_broker_said(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    """Subjects, bucket names and server addresses are for the gateway's log: a trigger URL
    answers anyone, and its token lookup may meet an outage. The log names the route, not the
    path (a trigger URL's path is its secret token)."""
    with caplog.at_level(logging.WARNING, logger="crewyard.gateway"):
        r = client.post("/outage/trg_secret-token-value")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "10.1.2.3" not in r.text and "t.evt" not in r.text
    logged = caplog.text
    assert "10.1.2.3" in logged and "/outage/{token}" in logged and "secret-token-value" not in logged
