"""Figure 3's floor: the least a fan-out from one Python process costs on this machine.

One process and no HTTP framework: an ordered consumer on the run's subjects, and each event
written as SSE text to every connected socket, one ``transport.write`` each (a client that comes
late gets what came before first; after the terminal event every connection is closed). The
gateway does more per delivery (HTTP/1.1 chunks, ASGI, resuming, keep-alives, access checks), so
what it costs above this floor is the platform's, and what this costs above the raw consumer is
one process writing 1,000 sockets — the part no gateway of one process can avoid.

Run as ``python -m crewyard.bench._floor NATS_URL CREDS SUBJECT``: it prints its port, serves
until its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from crewyard.core import subjects

from ._context import TERMINAL

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
    b"connection: close\r\n\r\n"
)


class Fanout:
    def __init__(self) -> None:
        self.history: list[bytes] = []
        self.clients: set[asyncio.Transport] = set()
        self.ended = False

    async def on_msg(self, msg: Msg) -> None:
        event_type = subjects.parse_subject(msg.subject)[3].encode()
        text = b"id: %d\nevent: %s\ndata: %s\n\n" % (msg.metadata.sequence.stream, event_type, msg.data)
        self.history.append(text)
        for transport in self.clients:
            transport.write(text)
        if event_type in TERMINAL:
            self.ended = True
            for transport in list(self.clients):
                transport.close()


class Client(asyncio.Protocol):
    """One connection: the request's head is read and ignored, then it is a subscriber."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport in self.fanout.clients:
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.transport.write(HEAD + b"".join(self.fanout.history))
            if self.fanout.ended:
                self.transport.close()
            else:
                self.fanout.clients.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.fanout.clients.discard(self.transport)


async def serve(nats_url: str, creds: str, subject: str) -> None:
    fanout = Fanout()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(fanout), "127.0.0.1", 0, backlog=2048)
    nc = await nats.connect(nats_url, user_credentials=creds)
    await nc.jetstream().subscribe(
        subject,
        ordered_consumer=True,
        cb=fanout.on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    server.close()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))
