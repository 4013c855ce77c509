"""What each NATS user may publish and subscribe to (pure: subjects in, permission lists out).

JetStream is driven through subjects, so permissions on subjects are permissions on streams:
``$JS.API.STREAM.DELETE.<stream>`` deletes a stream, ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>``
pulls from a consumer, ``$JS.ACK.<stream>.<name>.>`` acknowledges its messages, a publish to an
event subject appends an event. Nobody but the operator's ``admin`` user may delete, purge or
update the event streams. Each user receives replies on an inbox prefix of its own
(``_INBOX_<user>``) so that no user can listen in on another's replies, which carry events.

| user      | events stream: read, and append …                  | platform | objects | KV             |
|-----------|----------------------------------------------------|----------|---------|----------------|
| gateway   | project, deployment, run, webhook, trigger, …      | rw       | rw      | keys, sessions |
| runner    | run, thread, table; durables ``runner``, ``thread-keeper`` | — | rw   | slots, leases  |
| builder   | deployment; durable ``builder``                    | —        | rw      | —              |
| projector | nothing                                            | —        | —       | —              |
| notifier  | delivery, webhook; durables ``notifier-…``         | —        | —       | webhook health |
| scheduler | schedule, ``run.queued``                           | —        | —       | —              |
| consumer  | pull/ack/info on its own durable only              | —        | —       | —              |

Every service that appends (all but the projector) also writes its own keys (``<service>.…``)
in the readiness heartbeat bucket (``HEALTH_BUCKET``): each readiness check proves that
JetStream takes a write. The projector only reads, and is given no write for it. The gateway's
buckets: the last use of each API key, and console sessions signed out before their expiry.

The platform's own durables (``runner``, ``builder``, ``notifier-…``) can be pulled from,
acknowledged on, reconfigured and deleted only by their service. A service that starts using a
new bucket or durable must be given it here (a refused request is logged as a permissions
violation). An outside consumer gets no consumer-create permission at all: the platform makes
its durable with the filters it chose, so the filter can never be widened (with several filter
subjects the create API subject carries no filter, so a create permission could not pin it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from crewyard.eventstore import StreamSettings

API = "$JS.API"
DURABLES = {
    "runner": ("runner", "thread-keeper"),
    "builder": ("builder",),
    "notifier": ("notifier-runs", "notifier-deployments", "notifier-deliveries"),
}
KV_BUCKETS = {
    "runner": ("CREWYARD_SLOTS", "CREWYARD_RUNNER_LEASES"),
    "gateway": ("CREWYARD_KEY_USAGE", "CREWYARD_SESSIONS_ENDED"),
    "notifier": ("CREWYARD_WEBHOOK_HEALTH",),
}
#: Readiness heartbeats (``crewyard.health``): written by every service that appends.
HEALTH_BUCKET = "CREWYARD_HEALTH"
#: What each service appends: aggregates (``run``) or single types (``run.run.queued``).
APPENDS = {
    "gateway": (
        "project",
        "deployment",
        "run",
        "webhook",
        "trigger",
        "schedule",
        "delivery",
        "table",
        "thread",
    ),
    #: A crew writes rows of its project's tables and a thread run its thread, through its runner.
    "runner": ("run", "thread", "table"),
    "builder": ("deployment",),
    "notifier": ("delivery", "webhook"),
    "scheduler": ("schedule", "run.run.queued"),
    "projector": (),
}
SERVICES = ("gateway", "runner", "builder", "projector", "notifier", "scheduler")


class Names(msgspec.Struct, frozen=True, kw_only=True):
    """The streams and buckets the platform uses (from its stream settings)."""

    events: str = "CREWYARD_EVENTS"
    prefix: str = "crewyard.evt"
    platform: str = "CREWYARD_PLATFORM"
    platform_prefix: str = "crewyard.platform"
    objects: str = "CREWYARD_OBJECTS"
    reserved_scopes: tuple[str, ...] = ("_secret",)

    @classmethod
    def of(cls, stream: StreamSettings) -> Names:
        """The names a platform with these stream settings uses."""
        return cls(
            events=stream.name,
            prefix=stream.prefix,
            platform=stream.platform_name,
            platform_prefix=stream.platform_prefix,
            objects=stream.object_bucket,
        )


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    pub_allow: list[str]
    sub_allow: list[str]
    pub_deny: list[str] = msgspec.field(default_factory=list)
    sub_deny: list[str] = msgspec.field(default_factory=list)

    @property
    def inbox_prefix(self) -> str | None:
        """The inbox prefix these permissions let the user receive replies on."""
        for subject in self.sub_allow:
            if subject.startswith("_INBOX") and subject.endswith(".>"):
                return subject[:-2]
        return None

    def claims(self) -> dict[str, Any]:
        pub: dict[str, list[str]] = {"allow": sorted(set(self.pub_allow))}
        sub: dict[str, list[str]] = {"allow": sorted(set(self.sub_allow))}
        if self.pub_deny:
            pub["deny"] = sorted(set(self.pub_deny))
        if self.sub_deny:
            sub["deny"] = sorted(set(self.sub_deny))
        return {"pub": pub, "sub": sub}


def _stream_use(stream: str) -> list[str]:
    """Check or create a stream (never update, purge or delete it) and read it: direct and
    message gets, ephemeral consumers (ordered push and pulled), flow-control replies."""
    return [
        f"{API}.INFO",
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.CREATE.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.*",
        f"{API}.CONSUMER.CREATE.{stream}.*.>",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"{API}.CONSUMER.DELETE.{stream}.*",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _durable(stream: str, name: str) -> list[str]:
    return [
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}.>",
        f"$JS.ACK.{stream}.{name}.>",
    ]


def _objects(bucket: str) -> list[str]:
    stream = f"OBJ_{bucket}"
    # A put of an existing name purges the old chunks, so writers need purge on this stream;
    # a get looks the stream up by subject.
    return [*_stream_use(stream), f"{API}.STREAM.PURGE.{stream}", f"{API}.STREAM.NAMES", f"$O.{bucket}.>"]


def _kv(bucket: str) -> list[str]:
    return [*_stream_use(f"KV_{bucket}"), f"$KV.{bucket}.>"]


def _others_durables(names: Names, owner: str | None) -> list[str]:
    """Pulling from or acknowledging on another service's durable is refused, even though reading
    through ephemeral consumers (whose names the server picks) needs a wildcard."""
    out = []
    for durable in (d for service, ds in DURABLES.items() if service != owner for d in ds):
        out += [
            f"{API}.CONSUMER.MSG.NEXT.{names.events}.{durable}",
            f"$JS.ACK.{names.events}.{durable}.>",
            f"{API}.CONSUMER.DELETE.{names.events}.{durable}",
            f"{API}.CONSUMER.CREATE.{names.events}.{durable}",
            f"{API}.CONSUMER.CREATE.{names.events}.{durable}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{names.events}.{durable}",
        ]
    return out


def service_permissions(service: str, names: Names) -> Permissions:
    """The permissions of one platform service's user."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    p = names.prefix
    pub = _stream_use(names.events)
    deny = _others_durables(names, service)
    for durable in DURABLES.get(service, ()):
        pub += _durable(names.events, durable)
    for bucket in KV_BUCKETS.get(service, ()):
        pub += _kv(bucket)
    if APPENDS[service]:
        pub += [*_stream_use(f"KV_{HEALTH_BUCKET}"), f"$KV.{HEALTH_BUCKET}.{service}.>"]
    if service in ("gateway", "runner", "builder"):
        pub += _objects(names.objects)
    for what in APPENDS[service]:
        aggregate, _, event_type = what.partition(".")
        pub.append(f"{p}.*.{aggregate}.*.{event_type}" if event_type else f"{p}.*.{aggregate}.>")
    if service == "gateway":
        pub += [*_stream_use(names.platform), f"{names.platform_prefix}.>"]
        # Outside consumers' durables (named after their ids) are made and deleted by the gateway.
        pub += [f"{API}.CONSUMER.DURABLE.CREATE.{names.events}.*"]
    else:
        # Only the gateway writes secret-bearing events (environment values).
        deny += [f"{p}.{scope}.>" for scope in names.reserved_scopes]
    return Permissions(pub_allow=pub, sub_allow=[f"_INBOX_{service}.>"], pub_deny=deny)


def admin_permissions() -> Permissions:
    """The operator's own user: everything in the platform's account (setup, migrations, tests)."""
    return Permissions(pub_allow=[">"], sub_allow=[">"])


def consumer_permissions(names: Names, durable: str) -> Permissions:
    """An outside consumer: pull from, acknowledge on and read the state of its own durable."""
    return Permissions(
        pub_allow=[
            f"{API}.CONSUMER.MSG.NEXT.{names.events}.{durable}",
            f"{API}.CONSUMER.INFO.{names.events}.{durable}",
            f"$JS.ACK.{names.events}.{durable}.>",
        ],
        sub_allow=[f"_INBOX_{durable}.>"],
    )


def system_permissions() -> Permissions:
    """The gateway's user in the system account: it only pushes account updates (revocations)."""
    return Permissions(pub_allow=["$SYS.REQ.CLAIMS.UPDATE"], sub_allow=["_INBOX_system.>"])
