"""Outside consumers' credentials, folded from the platform stream's events (pure)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from .events import ConsumerCreated, ConsumerRevoked, Recorded


class ConsumerState(msgspec.Struct, kw_only=True):
    consumer_id: str
    name: str
    project: str
    durable: str
    user_public_key: str
    filter_subjects: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    version: int = 0

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def fold_consumers(history: list[Recorded]) -> dict[str, ConsumerState]:
    """Every consumer credential ever issued, by id (revoked ones included: revocations must be
    kept forever, so that their user keys stay refused)."""
    out: dict[str, ConsumerState] = {}
    for rec in history:
        e, data = rec.event, rec.event.data
        if isinstance(data, ConsumerCreated):
            out[e.aggregate_id] = ConsumerState(
                consumer_id=e.aggregate_id,
                name=data.name,
                project=data.project,
                durable=data.durable,
                user_public_key=data.user_public_key,
                filter_subjects=list(data.filter_subjects),
                created_at=e.time,
                expires_at=data.expires_at,
                version=rec.seq,
            )
        elif isinstance(data, ConsumerRevoked) and e.aggregate_id in out:
            state = out[e.aggregate_id]
            state.revoked_at, state.version = e.time, rec.seq
    return out


def revocations(consumers: dict[str, ConsumerState]) -> dict[str, int]:
    """User public key → unix time from which its credentials are refused."""
    return {
        c.user_public_key: int(c.revoked_at.timestamp())
        for c in consumers.values()
        if c.revoked_at is not None
    }
