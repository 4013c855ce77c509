"""What the OpenAPI document says where a handler's signature cannot say it: bodies read as a
stream (the gzip upload), answers that are bytes (artifact downloads), bodies that may be left
out (each an ``Operation`` class a route names with ``operation_class=``), answers kept as the
read model's JSON (:func:`answers`, sent as :class:`JsonBytes`), a query the handler reads
itself (:func:`documented`), and the error body (:func:`document_errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from crewyard.contract.common import GZIP, OCTET_STREAM

BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def answers(kind: type[Any], status: int = 200) -> dict[int, ResponseSpec]:
    """Document a success answer as ``kind`` where the handler sends the read model's JSON as it
    is (no decoding only to encode again): the contract type is the shape of that JSON."""
    return {status: ResponseSpec(kind, generate_examples=False, description="OK")}


class JsonBytes:
    """An answer (200 unless told) whose body is JSON encoded already (the read model's): sent as
    two ASGI messages, with none of a ``Response``'s merging of headers, cookies and encoders,
    which cost the busiest reads (a run, a page of runs) more than their query. The handler
    returns it as ``ASGIApp`` and documents its shape with :func:`answers`."""

    __slots__ = ("body", "status")

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body = body
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))],
        }
        await send(start)
        body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": self.body, "more_body": False}
        await send(body)


@dataclass
class OptionalBody(Operation):
    """The JSON body may be left out (Litestar marks every body required)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


@dataclass
class GzipUpload(Operation):
    """A crew upload: read as a stream, never whole into memory, so not a ``data`` parameter."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={GZIP: OpenAPIMediaType(schema=BINARY)},
            required=True,
            description="The crew folder as a gzip tarball (what `crewyard deploy` packs): its"
            " crewyard.toml or crewship.toml, code and requirements",
        )


@dataclass
class BinaryDownload(Operation):
    """A file's bytes: the whole (200) or one range (206), in the type the file was stored with."""

    def __post_init__(self) -> None:
        content: dict[str, OpenAPIMediaType] = {OCTET_STREAM: OpenAPIMediaType(schema=BINARY)}
        responses = self.responses if self.responses is not None else {}
        responses["200"] = OpenAPIResponse(description="The file", content=content)
        responses["206"] = OpenAPIResponse(description="The range asked for (Range)", content=content)
        responses["304"] = OpenAPIResponse(description="Not modified (If-None-Match matched the ETag)")
        responses["416"] = OpenAPIResponse(description="The range asked for is outside the file")
        self.responses = responses


def param(name: str, schema: Schema, description: str, where: ParamType = ParamType.QUERY) -> Parameter:
    return Parameter(name=name, param_in=where, schema=schema, description=description)


TEXT = Schema(type=OpenAPIType.STRING)
FLAG = Schema(type=OpenAPIType.BOOLEAN, default=False)


def page_size(default: int, most: int) -> Parameter:
    schema = Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=most, default=default)
    return param("limit", schema, f"How many, at most {most}")


def documented(*params: Parameter) -> type[Operation]:
    """The ``operation_class`` of a route that reads ``params`` from the request itself (no
    signature parsed on a busy read, or a query with repeatable or free-form entries)."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *params]

    return Documented


#: Where an event stream resumes: the last event id a client saw (either way of sending it).
RESUMING = (
    param("after", Schema(type=OpenAPIType.INTEGER, minimum=0), "Resume after this event id"),
    param(
        "Last-Event-ID",
        TEXT,
        "Resume after this event id (what a browser's EventSource sends)",
        ParamType.HEADER,
    ),
)


#: ``{"error": {"code", "message"}}``: what every failing request answers with.
ERROR_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["code", "message"],
            properties={
                "code": Schema(type=OpenAPIType.STRING, description="bad_request, not_found, conflict …"),
                "message": Schema(type=OpenAPIType.STRING, description="A sentence naming what is wrong"),
            },
        )
    },
    description="Every error: a stable code and a sentence for people",
)


def document_errors(document: OpenAPI) -> None:
    """Errors as the API sends them: Litestar documents its own validation body (``status_code``,
    ``detail``, ``extra``), which the gateway never sends (``errors.validation_error``); every
    operation's other statuses are the error body too (``default``)."""
    components = document.components
    if isinstance(components, list):  # one Components object is what the config gives
        components = components[0]
    components.schemas["ErrorBody"] = ERROR_BODY
    error = {"application/json": OpenAPIMediaType(schema=Reference("#/components/schemas/ErrorBody"))}
    for item in (document.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method, None)
            if not isinstance(op, Operation) or op.responses is None:
                continue
            for status, answer in op.responses.items():
                if status.startswith(("4", "5")) and isinstance(answer, OpenAPIResponse):
                    content = answer.content or {}
                    if all(_litestars_error(m) for m in content.values()):
                        answer.content = dict(error)
            op.responses.setdefault("default", OpenAPIResponse(description="An error", content=dict(error)))


def _litestars_error(media: OpenAPIMediaType) -> bool:
    schema = media.schema
    return isinstance(schema, Schema) and "status_code" in (schema.properties or {})
