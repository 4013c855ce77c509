"""What the OpenAPI document says where a handler's signature cannot say it: bodies read as a
stream (the gzip upload), answers that are bytes (artifact downloads), bodies that may be left
out. Each is an ``Operation`` class a route names with ``operation_class=``."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from crewyard.contract.common import GZIP, OCTET_STREAM

BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


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
