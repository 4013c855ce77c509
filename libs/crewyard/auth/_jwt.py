"""NATS nkeys and JWTs: make keys, sign claims, read and write ``.creds`` files.

A NATS JWT is ``base64url(header).base64url(claims).base64url(ed25519 signature)``, the
signature made over the first two parts by the issuer's nkey. The server checks the chain
operator → account → user itself; nothing here needs to verify, only to sign.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any, Literal

import nkeys

from crewyard.errors import CrewyardError

Kind = Literal["operator", "account", "user"]
_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_JWT_BEGIN, _JWT_END = "-----BEGIN NATS USER JWT-----", "------END NATS USER JWT------"
_SEED_BEGIN, _SEED_END = "-----BEGIN USER NKEY SEED-----", "------END USER NKEY SEED------"


class CredentialsError(CrewyardError, ValueError):
    """Credentials that cannot be read (wrong format, missing parts)."""


def new_seed(kind: Kind) -> str:
    """A fresh nkey seed (``SO…``, ``SA…``, ``SU…``) from 32 random bytes."""
    return bytes(nkeys.encode_seed(os.urandom(32), _PREFIX[kind])).decode()


def public_key(seed: str) -> str:
    return bytes(nkeys.from_seed(seed.encode()).public_key).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(
    subject: str, name: str, nats: dict[str, Any], signer_seed: str, *, expires: int | None = None
) -> str:
    """Sign the claims of ``subject`` (a public key) with ``signer_seed``."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": public_key(signer_seed),
        "name": name,
        "sub": subject,
        "nats": nats,
    }
    if expires is not None:
        claims["exp"] = int(expires)
    # The id is the hash of the claims without it (as NATS tools make it).
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    kp = nkeys.from_seed(signer_seed.encode())
    signature = kp.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(signature)}"


def claims_of(jwt: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for reading our own credentials)."""
    try:
        claims = json.loads(_unb64(jwt.split(".")[1]))
    except (IndexError, ValueError) as exc:
        raise CredentialsError("not a NATS JWT") from exc
    if not isinstance(claims, dict):
        raise CredentialsError("not a NATS JWT")
    return claims


def format_creds(jwt: str, seed: str) -> str:
    return (
        f"{_JWT_BEGIN}\n{jwt}\n{_JWT_END}\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"{_SEED_BEGIN}\n{seed}\n{_SEED_END}\n\n"
        "*************************************************************\n"
    )


def parse_creds(text: str) -> tuple[str, str]:
    """``(jwt, seed)`` of a ``.creds`` text; refuses anything else with a clear error."""
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        jwt = lines[lines.index(_JWT_BEGIN) + 1]
        seed = lines[lines.index(_SEED_BEGIN) + 1]
    except (ValueError, IndexError):
        raise CredentialsError("not a NATS credentials file (no user JWT and seed)") from None
    if not seed.startswith("SU") or jwt.count(".") != 2:
        raise CredentialsError("not a NATS credentials file (malformed user JWT or seed)")
    return jwt, seed
