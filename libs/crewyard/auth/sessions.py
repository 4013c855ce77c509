"""Signed-out console sessions as every gateway sees them: a bucket followed live.

A session cookie is signed and stateless (:mod:`crewyard.core.sessions`), so every gateway with
the platform's secret key accepts it until it expires. Signing out must end it everywhere, also
for a copy of the cookie: the gateway that signs a session out writes its reference (a hash of
its nonce) to the ``CREWYARD_SESSIONS_ENDED`` bucket, whose entries live as long as a session
can (``SESSION_TTL_S``; by then the cookie has expired by itself). Every gateway reads the whole
bucket at start and follows it with a watcher, keeping the few references in memory: checking a
cookie costs no round trip, and a sign-out reaches the other gateways as soon as the stream
pushes it. The gateway that wrote it counts it at once (read your own writes).

A gateway that cannot read the bucket at start does not start: it could not tell a signed-out
session from a live one. It tries again a few times first (``_START_TRIES``: a stream that is
electing a leader, or a broker on a loaded machine, may miss one deadline). While NATS is
unreachable later, it keeps what it has read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.core.sessions import SESSION_TTL_S, Session, session_ref
from crewyard.eventstore import EventStore, StoreUnavailable

log = logging.getLogger("crewyard.auth")
ENDED_BUCKET = "CREWYARD_SESSIONS_ENDED"
_START_S = 30.0
_START_TRIES = 4


class EndedSessions:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        #: reference → when the session would have expired (Unix seconds).
        self._ended: dict[str, int] = {}
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.store.js.key_value(ENDED_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.store.js.create_key_value(
                    KeyValueConfig(
                        bucket=ENDED_BUCKET,
                        history=1,
                        ttl=float(SESSION_TTL_S),
                        replicas=self.store.settings.replicas,
                    )
                )
        return self._kv

    def _note(self, ref: str, value: bytes | None) -> None:
        try:
            expires = int(value or b"0")
        except ValueError:
            expires = 0
        # An unreadable expiry still ends the session; it is forgotten with the bucket's entry.
        self._ended[ref] = expires or int(time.time()) + SESSION_TTL_S
        now = time.time()
        if len(self._ended) % 256 == 0:  # now and then, forget sessions that expired anyway
            self._ended = {r: e for r, e in self._ended.items() if e > now}

    async def start(self) -> None:
        """Read every ended session, then follow the bucket (call once, inside the event loop)."""
        for attempt in range(1, _START_TRIES + 1):
            try:
                watcher = await self._read_all()
                break
            except Exception as exc:
                await self.stop()
                if attempt == _START_TRIES:
                    raise StoreUnavailable(f"cannot read the signed-out console sessions: {exc!r}") from exc
                log.warning("cannot read the signed-out console sessions yet (%r); trying again", exc)
                await asyncio.sleep(2.0 * attempt)

        async def follow() -> None:
            async for entry in watcher:
                if entry is not None and entry.operation is None:
                    self._note(entry.key, entry.value)

        self._task = asyncio.get_running_loop().create_task(follow())

    async def _read_all(self) -> KeyValue.KeyWatcher:
        kv = await self._bucket()
        self._watcher = watcher = await kv.watchall()
        async with asyncio.timeout(_START_S):
            while (entry := await watcher.updates(timeout=_START_S)) is not None:  # type: ignore[no-untyped-call]
                self._note(entry.key, entry.value)
        return watcher

    async def stop(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[no-untyped-call]
            self._watcher = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def ended(self, session: Session) -> bool:
        return session_ref(session) in self._ended

    async def end(self, session: Session) -> None:
        """Sign ``session`` out on every gateway (raises :class:`StoreUnavailable` if it cannot)."""
        ref = session_ref(session)
        try:
            await (await self._bucket()).put(ref, str(session.expires).encode())
        except Exception as exc:
            raise StoreUnavailable(f"cannot record the sign-out: {exc!r}") from exc
        self._note(ref, str(session.expires).encode())
