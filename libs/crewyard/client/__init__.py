"""A typed Python client for the crewyard HTTP API, synchronous and asynchronous.

>>> from crewyard.client import Client
>>> with Client("http://127.0.0.1:8080", api_key="…") as api:
...     run = api.create_run(project="research", input={"topic": "AI agents"})
...     for message in api.run_events(run.id):        # resumes with Last-Event-ID after a drop
...         event = message.decode()                  # a crewyard.contract.events.StreamEvent
...         print(event.type, event.data)
...     print(api.get_run(run.id).output)

Answers are the shared contract's types (:mod:`crewyard.contract`); lists of runs come a page at
a time (``list_runs``) or all at once (``iter_runs``); every failure is a :class:`ClientError`
whose class says what happened (:class:`NotFound`, :class:`Conflict`, :class:`Unauthorized`,
:class:`TransportError` …) and whose message is one readable sentence. ``AsyncClient`` has the
same methods, awaited (streams with ``async for``).
"""

from crewyard.contract.deployments import Deployment
from crewyard.contract.events import StreamEvent
from crewyard.contract.projects import EnvChanged, EnvVar, LimitsSet, Project
from crewyard.contract.runs import Artifact, CancelResult, Run, RunPage

from ._async import AsyncClient
from ._errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from ._ops import seg
from ._sse import AsyncEventStream, EventStream, SseMessage, SseParser
from ._sync import Client
from ._transport import DEFAULT_API, AsyncTransport, Transport, tls_context

__all__ = [
    "DEFAULT_API",
    "ApiError",
    "Artifact",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncTransport",
    "BadRequest",
    "CancelResult",
    "Client",
    "ClientError",
    "Conflict",
    "Deployment",
    "EnvChanged",
    "EnvVar",
    "EventStream",
    "Forbidden",
    "LimitsSet",
    "NotFound",
    "PayloadTooLarge",
    "Project",
    "Run",
    "RunPage",
    "ServerError",
    "SseMessage",
    "SseParser",
    "StreamEvent",
    "Transport",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "seg",
    "tls_context",
]
