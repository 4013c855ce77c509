"""Platform settings, read from ``CREWYARD_*`` environment variables and command-line options.

Misconfiguration fails here, at start-up, with a message naming the variable: a value of the
wrong type as it is read, anything else by :mod:`crewyard.settings_checks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from crewyard.archive import ArchiveLimits
from crewyard.core.crewfile import memory_bytes
from crewyard.eventstore import StreamSettings
from crewyard.settings_checks import (
    BACKENDS,
    BUILD_BACKENDS,
    LOOPBACK_NAMES,
    SettingsError,
    check,
    is_loopback,
)

__all__ = [
    "BACKENDS",
    "BUILD_BACKENDS",
    "LOOPBACK_NAMES",
    "Settings",
    "SettingsError",
    "is_loopback",
    "load",
]


class Settings(msgspec.Struct, kw_only=True):
    data_dir: Path
    nats_url: str = "nats://127.0.0.1:4222"
    #: NATS credentials: a ``.creds`` file, a directory of ``<service>.creds`` files, or the
    #: text itself. Default: ``<data dir>/nats/auth/creds/<service>.creds`` (``crewyard up``).
    nats_creds: str | None = None
    #: Keys that issue and revoke outside consumers' NATS credentials (gateways only).
    #: Default: ``<data dir>/nats/auth/issuer.json`` (``crewyard up``).
    nats_issuer: str | None = None
    stream: StreamSettings = msgspec.field(default_factory=StreamSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    #: Every API route but the open ones needs an API key. Off (``--no-auth``) only for
    #: throw-away local use: the API then listens on loopback and nowhere else.
    auth: bool = True
    #: A file holding the token of the first admin key (``crewyard keys generate``): a gateway
    #: that finds no key at all registers this one instead of making and printing a new one.
    admin_key_file: str | None = None
    #: ``Host`` header values the API answers (comma-separated names or addresses, ``*.domain``
    #: for its subdomains, ``*`` for any). Empty: loopback names when it listens on loopback,
    #: else any (with keys required, a rebound name gains a page nothing).
    allowed_hosts: str = ""
    #: Origins a browser may call the API from (comma-separated; empty: CORS is off).
    cors_origins: str = ""
    #: Mutating requests (POST, PUT, PATCH, DELETE) one API key may make per second on one
    #: gateway, in bursts of ten times that; 0 turns the limit off.
    rate_limit: float = 20.0
    #: Failed authentications (missing or bad key) one client address may make per second on one
    #: gateway, in bursts of ten times that, before it gets 429 instead of 401; 0: no limit.
    auth_fail_limit: float = 5.0
    #: Seconds a connection may take to send a request's headers (from the connection, or from
    #: a keep-alive connection's next request's first byte) before it gets 408 and is closed.
    header_timeout_s: float = 15.0
    #: Connections one client address may hold open on one gateway (loopback not counted: a
    #: reverse proxy on the same machine limits its own clients); 0: no limit.
    connections_per_address: int = 512
    #: Event streams (SSE) one API key may hold open at once on one gateway; 0: no limit.
    streams_per_key: int = 1000
    #: Webhooks, triggers, schedules and tables one project may have (deleted and revoked ones
    #: not counted); 0: no limit. A webhook sends a request per event it takes: without a bound,
    #: one project key could make every run event a flood of requests to one address.
    max_webhooks: int = 100
    max_triggers: int = 100
    max_schedules: int = 1000
    max_tables: int = 200
    #: Usable API keys and active outside consumers one project may have; 0: no limit. Each
    #: consumer is a durable consumer of the shared stream (its server takes a bounded number).
    max_keys: int = 100
    max_consumers: int = 20
    #: Largest accepted crew upload (compressed), its unpacked size (every byte out of gzip,
    #: headers included), its largest file and its number of files and folders.
    upload_limit_bytes: int = 50 * 1024 * 1024
    unpacked_limit_bytes: int = 500 * 1024 * 1024
    upload_max_file_bytes: int = 100 * 1024 * 1024
    upload_max_files: int = 10_000
    #: Execution backend: auto | docker | bwrap | process.
    backend: str = "auto"
    build_backend: str = "auto"
    docker_host: str | None = None
    base_image: str | None = None
    #: Docker: the base image of JavaScript crews (Node.js 20+ with npm); default node:22-bookworm-slim.
    node_base_image: str | None = None
    runner_concurrency: int = 4
    #: Empty: the runner makes one and keeps it in its data dir (``runner/identity.py``).
    runner_id: str = ""
    cancel_grace_s: float = 10.0
    #: A stopping runner (SIGTERM) lets its runs finish this long, then hands the rest back.
    runner_drain_s: float = 30.0
    #: How long a run's message may go unacknowledged before the broker hands it out again.
    runner_ack_wait_s: float = 30.0
    #: A runner that cannot renew its lease for this long stops its runs; a runner silent for
    #: this long (while the broker works) has its runs taken over. Longer than broker outages.
    runner_lease_s: float = 60.0
    #: Infrastructure failures (runner lost, engine error before the crew started) are retried.
    retry_max_attempts: int = 3
    retry_backoff_s: str = "1,5,15"
    default_timeout_s: float = 3600.0
    #: Warm sandboxes: how many a deployment that has run recently keeps started, its crew
    #: imported, waiting for the next runs (``warm = n`` in its config instead); the most one
    #: deployment may keep (a pool grows towards it while runs find it empty); the memory all
    #: idle ones may hold together on this runner, measured (0 turns warm sandboxes off); and
    #: how long a deployment may go without a run before its pool is emptied.
    warm_default: int = 1
    warm_max: int = 4
    warm_memory: str = "2g"
    warm_idle_s: float = 300.0
    artifact_max_file_bytes: int = 100 * 1024 * 1024
    artifact_max_total_bytes: int = 500 * 1024 * 1024
    #: A run's result may be this large (it travels in one event: the broker's max_payload bounds it).
    max_output_bytes: int = 4 * 1024 * 1024
    #: A runaway crew is stopped after this many events, or bytes of them, in one run.
    run_max_events: int = 25_000
    run_max_event_bytes: int = 32 * 1024 * 1024
    #: ... or once its files take this much disk (or more than a million files and folders).
    run_max_disk_bytes: int = 2 * 1024 * 1024 * 1024
    secret_key_b64: str | None = None
    #: Crews whose config asks for ``network = "host"`` get it only when the operator allows it.
    allow_host_network: bool = False
    #: Private networks (comma-separated CIDRs) crews may reach, e.g. a package proxy; the host's
    #: own addresses and link-local addresses stay unreachable whatever is listed here.
    network_allow: str = ""
    #: Docker backend: an engine network (that the operator has firewalled) instead of a private
    #: network stack per container; needed with a remote engine.
    docker_network: str | None = None
    #: The host uid of a sandbox's user where the host sees it as itself: a fork server's
    #: sandbox, a container (``crewyard.sandboxuid``). No account or other service may have it.
    sandbox_uid: int = 60400
    #: Sources and artifacts in an S3-protocol bucket (MinIO…) instead of the NATS object store.
    #: The runner's thread keeper looks at a busy thread's run this often (growing with each look,
    #: up to 30 s); a run still not queued after this many looks never will be: the thread is
    #: freed (its gateway died between the thread's write and the run's).
    thread_keeper_interval_s: float = 5.0
    thread_claim_checks: int = 6
    s3_endpoint: str | None = None
    s3_bucket: str = "crewyard"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = True
    #: Log level (debug | info | warning | error; empty: info for one service, warning for ``up``)
    #: and format (text | json: one JSON object per line with run and deployment ids).
    log_level: str = ""
    log_format: str = "text"
    #: Seconds between SSE keep-alive comments on a quiet stream (proxies close idle connections).
    sse_ping_s: float = 15.0
    #: Bytes of a run's newest events its SSE feed keeps in the gateway, and of all feeds together
    #: (past it, a growing feed keeps 64 KiB): a client needing older ones reads them from the stream.
    sse_window_bytes: int = 16 << 20
    sse_memory_bytes: int = 256 << 20
    #: Outgoing webhooks: ``public`` targets only, or also ``private`` and loopback addresses
    #: (``crewyard up`` allows them unless this is set; the multi-machine files in deploy/ don't).
    webhook_targets: str = "public"
    webhook_timeout_s: float = 10.0
    webhook_retry_base_s: float = 2.0
    webhook_retry_window_s: float = 86400.0
    #: A webhook is disabled after this many deliveries in a row ended failed.
    webhook_disable_after: int = 20
    #: At most this many requests in flight to one webhook at once, per notifier instance (fewer
    #: while the receiver answers slowly or fails).
    webhook_concurrency: int = 8
    notifier_ack_wait_s: float = 60.0
    #: How long an incoming trigger waits for its run to start before answering ``pending``.
    trigger_wait_s: float = 10.0
    #: Requests per second one trigger URL accepts (bursts of 4x that), per gateway.
    trigger_rate: float = 5.0
    #: Tests only: ``<epoch seconds>x<speed>`` makes the scheduler's clock run ``speed`` times
    #: faster than real time from that instant on.
    scheduler_clock: str = ""
    #: Port of the /healthz + /readyz listener of a service started alone (0: any free port).
    health_port: int = 0
    #: /readyz of a service with a read model fails while it is more events than this behind.
    ready_max_lag: int = 10_000
    #: Seconds a service waits for each answer of the event store (a read; each of an append's
    #: up to five tries) and for each read of the NATS object store before it takes the store
    #: as unavailable: while NATS is away, a read fails after this long, an append after about
    #: five times this (the API answers 503).
    store_timeout_s: float = 5.0

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        """The ``Host`` values the API answers (lower case, without ports); ``*`` for any."""
        given = tuple(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())
        if given:
            return given
        return LOOPBACK_NAMES if is_loopback(self.host) else ("*",)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @property
    def db_path(self) -> Path:
        return self.data_dir / "readmodel.sqlite3"

    @property
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            compressed_bytes=self.upload_limit_bytes,
            unpacked_bytes=self.unpacked_limit_bytes,
            file_bytes=self.upload_max_file_bytes,
            entries=self.upload_max_files,
        )

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def retry_backoff(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self.retry_backoff_s.split(",") if x.strip())

    @property
    def network_allow_list(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in self.network_allow.split(",") if x.strip())

    @property
    def warm_memory_bytes(self) -> int:
        """``warm_memory`` in bytes (``"2g"``, ``"512m"`` or a number of bytes)."""
        return memory_bytes(self.warm_memory) or 0

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def nats_auth_dir(self) -> Path:
        """Where the embedded broker keeps its trust chain and the platform users' credentials."""
        return self.data_dir / "nats" / "auth"

    def creds_for(self, user: str) -> str | None:
        """The NATS credentials ``user`` (a service, ``admin``) connects with, if any are known."""
        if self.nats_creds:
            given = Path(self.nats_creds).expanduser() if "BEGIN" not in self.nats_creds else None
            if given is not None and given.is_dir():
                return str(given / f"{user}.creds")
            return self.nats_creds
        local = self.nats_auth_dir / "creds" / f"{user}.creds"
        return str(local) if local.exists() else None

    @property
    def issuer_file(self) -> Path | None:
        """The consumer-credentials issuer keys, if this process has them."""
        path = Path(self.nats_issuer).expanduser() if self.nats_issuer else self.nats_auth_dir / "issuer.json"
        return path if path.exists() else None


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "CREWYARD_NATS_URL": ("nats_url", str),
    "CREWYARD_NATS_CREDS": ("nats_creds", str),
    "CREWYARD_NATS_ISSUER": ("nats_issuer", str),
    "CREWYARD_HOST": ("host", str),
    "CREWYARD_PORT": ("port", int),
    "CREWYARD_AUTH": ("auth", _flag),
    "CREWYARD_ADMIN_KEY_FILE": ("admin_key_file", str),
    "CREWYARD_ALLOWED_HOSTS": ("allowed_hosts", str),
    "CREWYARD_CORS_ORIGINS": ("cors_origins", str),
    "CREWYARD_RATE_LIMIT": ("rate_limit", float),
    "CREWYARD_AUTH_FAIL_LIMIT": ("auth_fail_limit", float),
    "CREWYARD_HEADER_TIMEOUT": ("header_timeout_s", float),
    "CREWYARD_CONNECTIONS_PER_ADDRESS": ("connections_per_address", int),
    "CREWYARD_STREAMS_PER_KEY": ("streams_per_key", int),
    "CREWYARD_MAX_WEBHOOKS": ("max_webhooks", int),
    "CREWYARD_MAX_TRIGGERS": ("max_triggers", int),
    "CREWYARD_MAX_SCHEDULES": ("max_schedules", int),
    "CREWYARD_MAX_TABLES": ("max_tables", int),
    "CREWYARD_MAX_KEYS": ("max_keys", int),
    "CREWYARD_MAX_CONSUMERS": ("max_consumers", int),
    "CREWYARD_UPLOAD_LIMIT": ("upload_limit_bytes", int),
    "CREWYARD_UNPACKED_LIMIT": ("unpacked_limit_bytes", int),
    "CREWYARD_UPLOAD_MAX_FILE": ("upload_max_file_bytes", int),
    "CREWYARD_UPLOAD_MAX_FILES": ("upload_max_files", int),
    "CREWYARD_BACKEND": ("backend", str),
    "CREWYARD_BUILD_BACKEND": ("build_backend", str),
    "CREWYARD_DOCKER_HOST": ("docker_host", str),
    "CREWYARD_BASE_IMAGE": ("base_image", str),
    "CREWYARD_NODE_BASE_IMAGE": ("node_base_image", str),
    "CREWYARD_RUNNER_CONCURRENCY": ("runner_concurrency", int),
    "CREWYARD_RUNNER_ID": ("runner_id", str),
    "CREWYARD_CANCEL_GRACE": ("cancel_grace_s", float),
    "CREWYARD_RUNNER_DRAIN": ("runner_drain_s", float),
    "CREWYARD_RUNNER_ACK_WAIT": ("runner_ack_wait_s", float),
    "CREWYARD_RUNNER_LEASE": ("runner_lease_s", float),
    "CREWYARD_RETRY_MAX_ATTEMPTS": ("retry_max_attempts", int),
    "CREWYARD_RETRY_BACKOFF": ("retry_backoff_s", str),
    "CREWYARD_DEFAULT_TIMEOUT": ("default_timeout_s", float),
    "CREWYARD_WARM": ("warm_default", int),
    "CREWYARD_WARM_MAX": ("warm_max", int),
    "CREWYARD_WARM_MEMORY": ("warm_memory", str),
    "CREWYARD_WARM_IDLE": ("warm_idle_s", float),
    "CREWYARD_ARTIFACT_MAX_FILE": ("artifact_max_file_bytes", int),
    "CREWYARD_ARTIFACT_MAX_TOTAL": ("artifact_max_total_bytes", int),
    "CREWYARD_MAX_OUTPUT_BYTES": ("max_output_bytes", int),
    "CREWYARD_RUN_MAX_EVENTS": ("run_max_events", int),
    "CREWYARD_RUN_MAX_EVENT_BYTES": ("run_max_event_bytes", int),
    "CREWYARD_RUN_MAX_DISK": ("run_max_disk_bytes", int),
    "CREWYARD_SECRET_KEY": ("secret_key_b64", str),
    "CREWYARD_ALLOW_HOST_NETWORK": ("allow_host_network", _flag),
    "CREWYARD_NETWORK_ALLOW": ("network_allow", str),
    "CREWYARD_DOCKER_NETWORK": ("docker_network", str),
    "CREWYARD_SANDBOX_UID": ("sandbox_uid", int),
    "CREWYARD_THREAD_KEEPER_INTERVAL": ("thread_keeper_interval_s", float),
    "CREWYARD_THREAD_CLAIM_CHECKS": ("thread_claim_checks", int),
    "CREWYARD_S3_ENDPOINT": ("s3_endpoint", str),
    "CREWYARD_S3_BUCKET": ("s3_bucket", str),
    "CREWYARD_S3_ACCESS_KEY": ("s3_access_key", str),
    "CREWYARD_S3_SECRET_KEY": ("s3_secret_key", str),
    "CREWYARD_S3_SECURE": ("s3_secure", _flag),
    "CREWYARD_SSE_PING": ("sse_ping_s", float),
    "CREWYARD_SSE_WINDOW": ("sse_window_bytes", int),
    "CREWYARD_SSE_MEMORY": ("sse_memory_bytes", int),
    "CREWYARD_LOG_LEVEL": ("log_level", str),
    "CREWYARD_LOG_FORMAT": ("log_format", str),
    "CREWYARD_WEBHOOK_TARGETS": ("webhook_targets", str),
    "CREWYARD_WEBHOOK_TIMEOUT": ("webhook_timeout_s", float),
    "CREWYARD_WEBHOOK_RETRY_BASE": ("webhook_retry_base_s", float),
    "CREWYARD_WEBHOOK_RETRY_WINDOW": ("webhook_retry_window_s", float),
    "CREWYARD_WEBHOOK_DISABLE_AFTER": ("webhook_disable_after", int),
    "CREWYARD_WEBHOOK_CONCURRENCY": ("webhook_concurrency", int),
    "CREWYARD_NOTIFIER_ACK_WAIT": ("notifier_ack_wait_s", float),
    "CREWYARD_TRIGGER_WAIT": ("trigger_wait_s", float),
    "CREWYARD_TRIGGER_RATE": ("trigger_rate", float),
    "CREWYARD_SCHEDULER_CLOCK": ("scheduler_clock", str),
    "CREWYARD_HEALTH_PORT": ("health_port", int),
    "CREWYARD_READY_MAX_LAG": ("ready_max_lag", int),
    "CREWYARD_STORE_TIMEOUT": ("store_timeout_s", float),
}


def load(data_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, then ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    for var, (field, kind) in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[field] = kind(raw)
        except ValueError:
            what = {"_flag": "true/false"}.get(
                getattr(kind, "__name__", ""), getattr(kind, "__name__", "value")
            )
            raise SettingsError(f"{var}={raw!r} is not a valid {what}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    replicas = os.environ.get("CREWYARD_STREAM_REPLICAS")
    if replicas:
        if not replicas.isdigit() or not 1 <= int(replicas) <= 5:
            raise SettingsError(f"CREWYARD_STREAM_REPLICAS={replicas!r} must be 1 to 5 (3 on a NATS cluster)")
        values.setdefault("stream", StreamSettings(replicas=int(replicas)))
    root = Path(data_dir or os.environ.get("CREWYARD_DATA_DIR") or ".crewyard").expanduser().resolve()
    values["data_dir"] = root
    settings = Settings(**values)
    check(settings)
    return settings
