"""API keys and roles (pure): the token format, what a key is, and what it may do.

Roles are ordered; each includes the ones below it: ``read`` (runs, events, artifacts,
deployments, build logs, env names) < ``run`` (invoke, cancel) < ``deploy`` (deploy, rollback,
env, limits, webhooks, triggers, schedules) < ``admin`` (everything, keys and consumers
included). A key belongs to one project or, with ``project`` None, to every project.

A key never learns whether another project exists: :func:`decide` answers ``not_found`` for a
project the key does not cover, exactly as for a project that does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from .events import ApiKeyCreated, ApiKeyRevoked, Recorded

ROLES = ("read", "run", "deploy", "admin")
Role = Literal["read", "run", "deploy", "admin"]
#: Tokens are recognisable (secret scanners, logs) and carry 256 random bits.
TOKEN_PREFIX = "cyk_"
_TOKEN_RE = re.compile(r"cyk_[A-Za-z0-9_-]{43}")
Decision = Literal["ok", "forbidden", "not_found"]


def new_token(rand: Callable[[int], str] = secrets.token_urlsafe) -> str:
    return TOKEN_PREFIX + rand(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return _TOKEN_RE.fullmatch(token) is not None


def rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


class ApiKey(msgspec.Struct, kw_only=True):
    key_id: str
    name: str
    role: str
    project: str | None
    token_sha256: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_by: str | None = None
    #: Revoked with the keys made from it (``ApiKeyRevoked.cascade``), or made from such a key:
    #: a key made from it later is revoked as it is made.
    cascaded: bool = False
    version: int = 0

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def matches(self, token: str) -> bool:
        """Constant-time comparison of the stored hash with the token's."""
        return self.matches_hash(token_hash(token))

    def matches_hash(self, digest: str) -> bool:
        """:meth:`matches`, given the token's :func:`token_hash`."""
        return hmac.compare_digest(self.token_sha256, digest)

    def covers(self, project: str) -> bool:
        return self.project is None or self.project == project

    def may_create(self, role: str, project: str | None) -> bool:
        """A key creates only keys no wider than itself (and only an admin creates keys)."""
        if self.role != "admin" or rank(role) < 0:
            return False
        return self.project is None or project == self.project


def expiry_within(creator: ApiKey | None, asked: datetime | None) -> datetime | None:
    """When a key or credential made by ``creator`` expires: as ``asked`` (None: never) when the
    creator never expires; otherwise no later than the creator (its own end when none is asked
    for), so that a key about to expire cannot make itself a lasting successor. Raises
    ValueError when ``asked`` is later."""
    if creator is None or creator.expires_at is None:
        return asked
    if asked is None:
        return creator.expires_at
    if asked > creator.expires_at:
        raise ValueError(
            f"a key can only make keys and credentials that expire when it does or before"
            f" ({creator.expires_at.isoformat()})"
        )
    return asked


def decide(key: ApiKey, needed: str, project: str | None) -> Decision:
    """May ``key`` do what needs role ``needed`` on ``project`` (None: no particular project)?"""
    if project is not None and not key.covers(project):
        return "not_found"
    if project is None and needed == "admin" and key.project is not None:
        return "forbidden"  # platform-wide administration needs a platform-wide key
    return "ok" if rank(key.role) >= rank(needed) else "forbidden"


class KeyFold:
    """Every API key by id (revoked and expired ones too), folded from the platform stream one
    event at a time: a registry applies each new event without folding the history again (that
    was the whole history per event, quadratic in the keys ever made)."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self._children: dict[str, list[str]] = {}  # by creator: a cascade walks only what its key made

    def apply(self, rec: Recorded) -> None:
        keys, e, data = self.keys, rec.event, rec.event.data
        if isinstance(data, ApiKeyCreated):
            parent = keys.get(data.created_by) if data.created_by else None
            cascaded = parent is not None and parent.cascaded  # made from a key revoked with its own
            keys[data.key_id] = ApiKey(
                key_id=data.key_id,
                name=data.name,
                role=data.role,
                project=data.project,
                token_sha256=data.token_sha256,
                created_at=e.time,
                expires_at=data.expires_at,
                revoked_at=e.time if cascaded else None,
                created_by=data.created_by,
                cascaded=cascaded,
                version=rec.seq,
            )
            if data.created_by:
                self._children.setdefault(data.created_by, []).append(data.key_id)
        elif isinstance(data, ApiKeyRevoked) and data.key_id in keys:
            key = keys[data.key_id]
            key.revoked_at, key.version = key.revoked_at or e.time, rec.seq
            todo = [key.key_id] if data.cascade and not key.cascaded else []
            while todo:  # the key and every key made from it, each once (a cascaded key's were)
                ended = keys[todo.pop()]
                ended.revoked_at, ended.cascaded = ended.revoked_at or e.time, True
                todo += [c for c in self._children.get(ended.key_id, ()) if not keys[c].cascaded]


def fold_keys(history: list[Recorded]) -> dict[str, ApiKey]:
    """Every API key by id (revoked and expired ones too), from the platform stream."""
    fold = KeyFold()
    for rec in history:
        fold.apply(rec)
    return fold.keys


def made_from(keys: dict[str, ApiKey], key_id: str) -> list[ApiKey]:
    """The keys made from ``key_id``: the keys it created, the keys those created, and so on
    (oldest first)."""
    children: dict[str, list[ApiKey]] = {}
    for key in keys.values():
        if key.created_by is not None:
            children.setdefault(key.created_by, []).append(key)
    found: dict[str, ApiKey] = {}
    todo = [key_id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.key_id not in found and child.key_id != key_id:
                found[child.key_id] = child
                todo.append(child.key_id)
    return sorted(found.values(), key=lambda k: k.created_at)
