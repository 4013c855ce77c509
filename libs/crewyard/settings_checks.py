"""What the platform settings must hold, checked once at start-up: each failure a
:class:`SettingsError` naming the ``CREWYARD_*`` variable to change.

:func:`crewyard.settings.load` calls :func:`check` on every :class:`~crewyard.settings.Settings`
it makes; the values' own types were checked as they were read.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from crewyard.core.crewfile import MAX_WARM, valid_memory
from crewyard.errors import CrewyardError
from crewyard.logs import FORMATS, LEVELS

if TYPE_CHECKING:
    from crewyard.settings import Settings

BACKENDS = ("auto", "docker", "bwrap", "process")
BUILD_BACKENDS = ("auto", "docker", "venv")


class SettingsError(CrewyardError, ValueError):
    pass


#: Names the API answers by default when it listens on loopback (``Host`` without its port).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to listen on) is on this machine only."""
    if host.lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check(settings: Settings) -> None:
    """Refuse settings the platform cannot run with (:class:`SettingsError`)."""
    if settings.backend not in BACKENDS:
        raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, got {settings.backend!r}")
    if settings.build_backend not in BUILD_BACKENDS:
        raise SettingsError(f"build backend must be one of {', '.join(BUILD_BACKENDS)}")
    try:
        settings.retry_backoff  # noqa: B018 - validates the list
    except ValueError:
        raise SettingsError("CREWYARD_RETRY_BACKOFF must be comma-separated seconds, e.g. 1,5,15") from None
    if settings.retry_max_attempts < 1 or settings.runner_ack_wait_s < 1:
        raise SettingsError("CREWYARD_RETRY_MAX_ATTEMPTS and CREWYARD_RUNNER_ACK_WAIT must be at least 1")
    if settings.runner_lease_s < 3:
        raise SettingsError("CREWYARD_RUNNER_LEASE must be at least 3 seconds")
    if settings.s3_endpoint and not (settings.s3_access_key and settings.s3_secret_key):
        raise SettingsError("CREWYARD_S3_ENDPOINT needs CREWYARD_S3_ACCESS_KEY and CREWYARD_S3_SECRET_KEY")
    if not 0 < settings.store_timeout_s <= 300:
        raise SettingsError("CREWYARD_STORE_TIMEOUT must be more than 0 and at most 300 seconds")
    if not 0 < settings.sse_ping_s <= 3600:
        raise SettingsError("CREWYARD_SSE_PING must be more than 0 and at most 3600 seconds")
    if not 64 << 10 <= settings.sse_window_bytes <= settings.sse_memory_bytes:
        raise SettingsError(
            "CREWYARD_SSE_WINDOW must be at least 65536 bytes and at most CREWYARD_SSE_MEMORY"
        )
    limits = (settings.upload_limit_bytes, settings.unpacked_limit_bytes, settings.upload_max_file_bytes)
    if min(limits) < 1 or settings.upload_max_files < 1:
        raise SettingsError("upload limits (CREWYARD_UPLOAD_*, CREWYARD_UNPACKED_LIMIT) must be at least 1")
    if settings.log_level and settings.log_level.lower() not in LEVELS:
        raise SettingsError(
            f"CREWYARD_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {settings.log_level!r}"
        )
    if settings.log_format not in FORMATS:
        raise SettingsError(f"CREWYARD_LOG_FORMAT must be text or json, got {settings.log_format!r}")
    if settings.runner_drain_s < 0:
        raise SettingsError("CREWYARD_RUNNER_DRAIN must not be negative")
    budget = (settings.max_output_bytes, settings.run_max_events, settings.run_max_event_bytes)
    if min(*budget, settings.run_max_disk_bytes) < 1:
        raise SettingsError(
            "CREWYARD_MAX_OUTPUT_BYTES, CREWYARD_RUN_MAX_EVENTS, CREWYARD_RUN_MAX_EVENT_BYTES and"
            " CREWYARD_RUN_MAX_DISK must be at least 1"
        )
    for cidr in settings.network_allow_list:
        try:
            ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            raise SettingsError(
                f"CREWYARD_NETWORK_ALLOW: {cidr!r} is not an IPv4 network (e.g. 10.1.2.3/32)"
            ) from None
    if not 0 <= settings.health_port <= 65535:
        raise SettingsError("CREWYARD_HEALTH_PORT must be a port number (0: any free port)")
    if settings.ready_max_lag < 0:
        raise SettingsError("CREWYARD_READY_MAX_LAG must not be negative")
    if settings.runner_concurrency < 1:
        raise SettingsError("CREWYARD_RUNNER_CONCURRENCY must be at least 1")
    _check_warm(settings)
    _check_outbound(settings)
    _check_front_door(settings)


def _check_warm(settings: Settings) -> None:
    if not 0 <= settings.warm_default <= settings.warm_max <= MAX_WARM:
        raise SettingsError(f"CREWYARD_WARM must be 0 to CREWYARD_WARM_MAX, which must be at most {MAX_WARM}")
    if settings.warm_memory.strip() not in ("0", "") and not valid_memory(settings.warm_memory):
        raise SettingsError('CREWYARD_WARM_MEMORY must be a size like "2g" or "512m" (0: no warm sandboxes)')
    if not 0 < settings.warm_idle_s <= 86400:
        raise SettingsError("CREWYARD_WARM_IDLE must be more than 0 and at most 86400 seconds")


def _check_front_door(settings: Settings) -> None:
    if not settings.auth and not is_loopback(settings.host):
        raise SettingsError(
            f"without API keys (--no-auth, CREWYARD_AUTH=false) the API listens on loopback only,"
            f" not on {settings.host!r}: leave --host out, or keep keys on"
        )
    if settings.rate_limit < 0:
        raise SettingsError("CREWYARD_RATE_LIMIT must not be negative (0 turns it off)")
    if settings.auth_fail_limit < 0:
        raise SettingsError("CREWYARD_AUTH_FAIL_LIMIT must not be negative (0 turns it off)")
    if not 0 < settings.header_timeout_s <= 3600:
        raise SettingsError("CREWYARD_HEADER_TIMEOUT must be more than 0 and at most 3600 seconds")
    if settings.connections_per_address < 0:
        raise SettingsError("CREWYARD_CONNECTIONS_PER_ADDRESS must not be negative (0 turns it off)")
    if not 0 < settings.sandbox_uid < 2**31 - 1:
        raise SettingsError("CREWYARD_SANDBOX_UID must be a uid from 1 to 2147483646 that no account has")
    if settings.streams_per_key < 0:
        raise SettingsError("CREWYARD_STREAMS_PER_KEY must not be negative (0 turns it off)")
    for kind in ("webhooks", "triggers", "schedules", "tables"):
        if getattr(settings, f"max_{kind}") < 0:
            raise SettingsError(f"CREWYARD_MAX_{kind.upper()} must not be negative (0 turns it off)")
    for origin in settings.cors_origin_list:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"CREWYARD_CORS_ORIGINS: {origin!r} is not an origin like https://app.example"
            )


def _check_outbound(settings: Settings) -> None:
    if settings.webhook_targets not in ("public", "private"):
        raise SettingsError("CREWYARD_WEBHOOK_TARGETS must be public or private")
    if settings.webhook_timeout_s <= 0 or settings.webhook_retry_base_s <= 0:
        raise SettingsError("CREWYARD_WEBHOOK_TIMEOUT and CREWYARD_WEBHOOK_RETRY_BASE must be positive")
    if settings.webhook_concurrency < 1 or settings.webhook_disable_after < 1:
        raise SettingsError(
            "CREWYARD_WEBHOOK_CONCURRENCY and CREWYARD_WEBHOOK_DISABLE_AFTER must be at least 1"
        )
    if settings.notifier_ack_wait_s < settings.webhook_timeout_s * 2 + 5:
        raise SettingsError("CREWYARD_NOTIFIER_ACK_WAIT must exceed twice CREWYARD_WEBHOOK_TIMEOUT plus 5 s")
    if settings.trigger_rate <= 0 or not 0 <= settings.trigger_wait_s <= 60:
        raise SettingsError("CREWYARD_TRIGGER_RATE must be positive, CREWYARD_TRIGGER_WAIT 0 to 60 seconds")
    if settings.scheduler_clock:
        origin, _, speed = settings.scheduler_clock.partition("x")
        try:
            float(origin), float(speed)
        except ValueError:
            raise SettingsError("CREWYARD_SCHEDULER_CLOCK must read <epoch seconds>x<speed>") from None
