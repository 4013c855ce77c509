"""Outside consumers: NATS credentials that replay and follow one project's events, nothing else.

Issuing one touches no server configuration: the platform makes a durable JetStream consumer with
the filters it chose (:func:`crewyard.core.subjects.consumer_filters` — the project's runs,
deployments and public project events, never a secret-bearing one), signs a user JWT whose
permissions name only that durable (:func:`consumer_permissions`), and records both in the platform
stream (``consumer.created``). Revoking records ``consumer.revoked``, deletes the durable and pushes
the account JWT with the user's key among its revocations, which disconnects it at once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import nats
from nats.aio.client import RawCredentials
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from crewyard.core import subjects
from crewyard.core.events import ConsumerCreated, ConsumerRevoked, make_event, public_types
from crewyard.core.ids import new_id
from crewyard.core.platform_state import ConsumerState, fold_consumers, revocations
from crewyard.errors import CrewyardError
from crewyard.eventstore import EventStore, StoreUnavailable

from ._jwt import format_creds, new_seed, public_key
from ._permissions import Names, consumer_permissions
from ._trust import Issuer

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConsumerError(CrewyardError, ValueError):
    """A request about consumers that cannot be done (bad name, unknown id)."""


class IssuedConsumer(msgspec.Struct, frozen=True, kw_only=True):
    """What the holder of new consumer credentials needs (``creds`` is shown once, never stored)."""

    consumer_id: str
    name: str
    project: str
    stream: str
    durable: str
    filter_subjects: list[str]
    inbox_prefix: str
    creds: str
    expires_at: datetime | None = None


class Consumers:
    """Issue, list and revoke outside consumers' credentials (the gateway's job)."""

    def __init__(self, store: EventStore, issuer: Issuer, names: Names, nats_url: str) -> None:
        self.store = store
        self.issuer = issuer
        self.names = names
        self.nats_url = nats_url

    async def all(self) -> dict[str, ConsumerState]:
        filt = f"{self.store.settings.platform_prefix}.consumer.>"
        raws = await self.store.load_raw(filt, stream=self.store.settings.platform_name)
        return fold_consumers([r.decode() for r in raws])

    async def create(
        self, project: str, name: str, *, expires_at: datetime | None = None, created_by: str | None = None
    ) -> IssuedConsumer:
        subjects.check_project_name(project)
        if not _NAME.match(name):
            raise ConsumerError(
                f"invalid consumer name {name!r}: use 1-63 lower-case letters, digits, '-' or '_'"
            )
        consumer_id = new_id("con")
        durable = consumer_id  # unique forever: a revoked durable's name never comes back
        filters = subjects.consumer_filters(project, public_types("project"), self.store.prefix)
        config = ConsumerConfig(
            durable_name=durable,
            description=f"outside consumer {name} of project {project}",
            filter_subjects=filters,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=1000,
        )
        try:
            await self.store.js.add_consumer(self.store.stream, config)
        except Exception as exc:
            raise StoreUnavailable(f"cannot create consumer {durable}: {exc!r}") from exc
        seed = new_seed("user")
        user_key = public_key(seed)
        permissions = consumer_permissions(self.names, durable)
        expires = int(expires_at.timestamp()) if expires_at else None
        jwt = self.issuer.user_jwt(f"{project}/{name}", user_key, permissions, expires=expires)
        payload = ConsumerCreated(
            name=name,
            project=project,
            durable=durable,
            user_public_key=user_key,
            filter_subjects=filters,
            expires_at=expires_at,
            created_by=created_by,
        )
        event = make_event(
            payload, project=subjects.PLATFORM_SCOPE, aggregate_id=consumer_id, event_id=new_id("evt")
        )
        await self.store.append(event, expected_seq=0)
        return IssuedConsumer(
            consumer_id=consumer_id,
            name=name,
            project=project,
            stream=self.store.stream,
            durable=durable,
            filter_subjects=filters,
            inbox_prefix=permissions.inbox_prefix or "",
            creds=format_creds(jwt, seed),
            expires_at=expires_at,
        )

    async def revoke(self, consumer_id: str, *, revoked_by: str | None = None) -> ConsumerState:
        consumers = await self.all()
        state = consumers.get(consumer_id)
        if state is None:
            raise ConsumerError(f"no consumer {consumer_id}")
        if state.revoked_at is None:
            event = make_event(
                ConsumerRevoked(revoked_by=revoked_by),
                project=subjects.PLATFORM_SCOPE,
                aggregate_id=consumer_id,
                event_id=new_id("evt"),
            )
            await self.store.append(event, expected_seq=state.version)
            state.revoked_at = datetime.now(UTC)
        try:
            await self.store.js.delete_consumer(self.store.stream, state.durable)
        except NotFoundError:
            pass  # deleted by an earlier attempt
        except Exception as exc:
            raise StoreUnavailable(f"cannot delete consumer {state.durable}: {exc!r}") from exc
        await self.push_revocations(revocations(consumers))
        return state

    async def push_revocations(self, revoked: dict[str, int]) -> None:
        """Send the account JWT with ``revoked`` to the servers' resolver (system account)."""
        jwt = self.issuer.account_jwt(revoked)
        try:
            nc = await nats.connect(
                self.nats_url,
                user_credentials=RawCredentials(self.issuer.system_user_creds),
                inbox_prefix="_INBOX_system",
                connect_timeout=5,
                max_reconnect_attempts=2,
            )
        except Exception as exc:
            raise StoreUnavailable(f"cannot reach NATS to revoke credentials: {exc!r}") from exc
        try:
            reply = await nc.request("$SYS.REQ.CLAIMS.UPDATE", jwt.encode(), timeout=5)
        except Exception as exc:
            raise StoreUnavailable(f"NATS did not take the account update: {exc!r}") from exc
        finally:
            await nc.close()
        answer = msgspec.json.decode(reply.data)
        if isinstance(answer, dict) and answer.get("error"):
            raise StoreUnavailable(f"NATS refused the account update: {answer['error']}")
