"""API keys as every gateway sees them: folded from the platform stream, followed live.

Each gateway reads every ``apikey.*`` event at start and then follows the platform stream with an
ordered consumer, so a key created or revoked through any gateway counts on every gateway within
moments (the stream pushes; nothing polls). Keys are few, so all of them live in memory, found by
the SHA-256 of their token; the comparison itself is constant-time.

``last_used_at`` is not an event (that would be an event per request): each gateway writes a
key's last use to the ``CREWYARD_KEY_USAGE`` bucket at most once a minute.

The first admin key is made exactly once however many gateways start together: its append
expects that no ``apikey.created`` exists yet (an expected sequence over all key subjects), so
only one append wins. Revocations likewise expect the last ``apikey.revoked`` their gateway had
applied, so they take turns across gateways: whether a platform-wide admin key stays usable is
checked with every revocation before it applied. A revocation with ``cascade`` is one event that
the fold applies to every key made from the key, then and later (``ApiKey.cascaded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.backoff import Backoff
from crewyard.core import subjects
from crewyard.core.access import (
    ApiKey,
    KeyFold,
    expiry_within,
    made_from,
    new_token,
    token_hash,
    well_formed,
)
from crewyard.core.events import ApiKeyCreated, ApiKeyRevoked, InvalidEvent, Recorded, decode, make_event
from crewyard.core.ids import new_id
from crewyard.errors import CrewyardError
from crewyard.eventstore import ConcurrencyConflict, EventStore, RawEvent, StoreUnavailable

log = logging.getLogger("crewyard.auth")
USAGE_BUCKET = "CREWYARD_KEY_USAGE"
USAGE_EVERY_S = 60.0


class KeyError_(CrewyardError, ValueError):
    """A key request that cannot be done (unknown key, a role wider than the creator's)."""


class LastAdminKey(CrewyardError, ValueError):
    """A revocation that would leave no usable platform-wide admin key."""


class RevokedMeanwhile(CrewyardError, ValueError):
    """The key making a request was revoked before the request's own revocation had its turn."""


class KeyRegistry:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.keys: dict[str, ApiKey] = {}
        self._by_hash: dict[str, str] = {}
        self._fold = KeyFold()
        self._position = 0
        self._changed = asyncio.Condition()
        self._revoking = asyncio.Lock()  # one revocation at a time here: they never race each other
        self._sub: object | None = None
        self._kv: KeyValue | None = None
        self._written: dict[str, float] = {}

    @property
    def _filter(self) -> str:
        return f"{self.store.settings.platform_prefix}.apikey.>"

    def _apply(self, raw: RawEvent) -> None:
        if raw.seq <= self._position:
            return
        self._position = raw.seq
        try:
            recorded = Recorded(raw.seq, decode(raw.data))
        except InvalidEvent as exc:
            log.warning("skipping platform event %d: %s", raw.seq, exc)
            return
        self._fold.apply(recorded)
        self.keys = self._fold.keys
        if isinstance(recorded.event.data, ApiKeyCreated):
            self._by_hash[recorded.event.data.token_sha256] = recorded.event.data.key_id

    async def start(self) -> None:
        """Read every key, then follow the platform stream (call once, inside the event loop)."""
        stream = self.store.settings.platform_name
        for raw in await self.store.load_raw(self._filter, stream=stream):
            self._apply(raw)

        async def on_msg(m: Msg) -> None:
            self._apply(RawEvent(m.metadata.sequence.stream, m.subject, m.data))
            async with self._changed:
                self._changed.notify_all()

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._position + 1
        )
        try:
            self._sub = await self.store.js.subscribe(
                self._filter,
                stream=stream,
                ordered_consumer=True,
                cb=on_msg,
                config=config,
                idle_heartbeat=2.0,
            )
        except Exception as exc:
            raise StoreUnavailable(f"cannot follow API keys: {exc!r}") from exc

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]

    async def _wait_for(self, seq: int, timeout: float = 10.0) -> None:
        """Until this gateway has applied the event at ``seq`` (read your own writes)."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._position >= seq), timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"the API keys of this gateway are behind the platform stream ({timeout:.0f} s)"
            ) from None

    def authenticate(self, token: str, now: datetime | None = None) -> ApiKey | None:
        """The usable key ``token`` is, or None (malformed, unknown, revoked or expired)."""
        if not well_formed(token):
            return None
        digest = token_hash(token)  # once: it is most of a request's authentication
        key_id = self._by_hash.get(digest)
        key = self.keys.get(key_id) if key_id else None
        if key is None or not key.matches_hash(digest) or not key.usable(now or datetime.now(UTC)):
            return None
        return key

    async def create(
        self,
        *,
        name: str,
        role: str,
        project: str | None,
        expires_at: datetime | None = None,
        created_by: ApiKey | None = None,
        first: bool = False,
        token: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token (the token is never stored: show it once). ``token``: register
        one made elsewhere (``crewyard keys generate``) instead of a new one."""
        if created_by is not None and not created_by.may_create(role, project):
            raise KeyError_("a key can only create keys no wider than itself")
        try:  # nor longer-lived
            expires_at = expiry_within(created_by, expires_at)
        except ValueError as exc:
            raise KeyError_(str(exc)) from None
        if token is not None and not well_formed(token):
            raise KeyError_("not an API key: expected cyk_ and 43 letters, digits, - or _")
        if token is not None and token_hash(token) in self._by_hash:
            raise KeyError_("this API key is registered already")
        token, key_id = token or new_token(), new_id("key")
        payload = ApiKeyCreated(
            key_id=key_id,
            name=name,
            token_sha256=token_hash(token),
            role=role,
            project=project,
            expires_at=expires_at,
            created_by=created_by.key_id if created_by else None,
        )
        event = make_event(
            payload, project=subjects.PLATFORM_SCOPE, aggregate_id=key_id, event_id=new_id("evt")
        )
        if first:  # only if no key was ever created (several gateways may try at once)
            over = f"{self.store.settings.platform_prefix}.apikey.*.apikey.created"
            seq = await self.store.append(event, expected_seq=0, expected_over=over)
        else:
            seq = await self.store.append(event, expected_seq=0)
        await self._wait_for(seq)
        return self.keys[key_id], token

    async def bootstrap(self, token: str | None = None) -> str | None:
        """The first admin key's token if this call made it; None when a key already exists.
        ``token``: the first admin key is this one (made by the operator), not a new one."""
        if self.keys:
            return None
        try:
            _, token = await self.create(name="admin", role="admin", project=None, first=True, token=token)
        except ConcurrencyConflict:
            return None  # another gateway made it first
        return token

    async def revoke(self, key_id: str, *, by: ApiKey | None = None, cascade: bool = False) -> list[str]:
        """Revoke ``key_id`` (with ``cascade``: and the keys made from it, in the same event, so
        that none made meanwhile survives); the ids of the keys the cascade ended (live ones
        made from it). Revocations are serialized across gateways (each expects the last one it
        saw), so checking that some platform-wide admin key stays usable cannot be raced."""
        over = f"{self.store.settings.platform_prefix}.apikey.*.apikey.revoked"
        async with self._revoking:
            return await self._revoke(key_id, by, cascade, over)

    async def _revoke(self, key_id: str, by: ApiKey | None, cascade: bool, over: str) -> list[str]:
        turns = Backoff(30, first=0.02, most=1.0, jitter=True)
        while not turns.expired:
            seq = await self.store.last_seq_of(over, stream=self.store.settings.platform_name) or 0
            await self._wait_for(seq)
            key = self.keys.get(key_id)
            if key is None or (by is not None and not by.may_create(key.role, key.project)):
                raise KeyError_(f"no key {key_id}")
            if by is not None and not self.keys[by.key_id].usable(datetime.now(UTC)):
                raise RevokedMeanwhile("the API key of this request is no longer valid (revoked or expired)")
            made = [k for k in made_from(self.keys, key_id) if k.revoked_at is None] if cascade else []
            if key.revoked_at is not None and (key.cascaded or not cascade):
                return []  # done already (a request sent twice, or two at once)
            now, ending = datetime.now(UTC), {key_id, *(k.key_id for k in made)}
            admins = [
                k for k in self.keys.values() if k.role == "admin" and k.project is None and k.usable(now)
            ]
            if admins and all(k.key_id in ending for k in admins):
                raise LastAdminKey(
                    "this would revoke the last platform-wide admin key"
                    + (
                        " (every one is made from this key): revoke it without cascade — the keys"
                        " made from it keep working — or revoke those one by one"
                        if len(admins) > 1
                        else ": create another one before revoking it"
                    )
                )
            payload = ApiKeyRevoked(key_id=key_id, revoked_by=by.key_id if by else None, cascade=cascade)
            event = make_event(
                payload, project=subjects.PLATFORM_SCOPE, aggregate_id=key_id, event_id=new_id("evt")
            )
            try:
                await self._wait_for(await self.store.append(event, expected_seq=seq, expected_over=over))
            except ConcurrencyConflict:  # another gateway's revocation came first: look again
                await turns.pause()
                continue
            return [k.key_id for k in made]
        raise StoreUnavailable("too many keys are being revoked at once; try again")

    def live_made_counts(self) -> dict[str, int]:
        """Per key, how many unrevoked keys were made from it (``access.made_from``), for every key
        at once: each live key counts for the keys above it."""
        counts: dict[str, int] = {}
        for key in self.keys.values():
            if key.revoked_at is not None:
                continue
            above, seen = key.created_by, {key.key_id}
            while above is not None and above not in seen:
                seen.add(above)
                counts[above] = counts.get(above, 0) + 1
                parent = self.keys.get(above)
                above = parent.created_by if parent is not None else None
        return counts

    async def _usage(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.store.js.key_value(USAGE_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.store.js.create_key_value(
                    KeyValueConfig(bucket=USAGE_BUCKET, history=1, replicas=self.store.settings.replicas)
                )
        return self._kv

    def touch(self, key: ApiKey) -> None:
        """Note a use of ``key`` (written at most once a minute; never delays the request)."""
        now = time.monotonic()
        if now - self._written.get(key.key_id, -USAGE_EVERY_S) < USAGE_EVERY_S:
            return
        self._written[key.key_id] = now

        async def write() -> None:
            with contextlib.suppress(Exception):
                kv = await self._usage()
                await kv.put(key.key_id, datetime.now(UTC).isoformat().encode())

        asyncio.get_running_loop().create_task(write())

    async def last_used(self, key_id: str) -> str | None:
        try:
            entry = await (await self._usage()).get(key_id)
        except (KeyNotFoundError, NotFoundError):
            return None
        except Exception:
            return None
        return (entry.value or b"").decode() or None
