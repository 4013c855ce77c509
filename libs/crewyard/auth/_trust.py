"""The platform's NATS trust chain: operator → accounts → users, all as signed JWTs.

nats-server runs in operator mode with a full account resolver: it knows the operator's JWT and
is preloaded with two account JWTs — the system account (server administration) and the
platform's account ``CREWYARD`` (JetStream on). Users are never configured on the server: a user
proves itself with a JWT signed by the account's signing key plus its own nkey. So credentials
for a new outside consumer are issued by signing, without touching any server, and revoked by
pushing an updated account JWT (with the user's key in ``revocations``) to the resolver, which
disconnects that user at once.

Files (directory 0700, files 0600): ``trust.json`` holds every seed (keep it offline in a
multi-machine setup); ``issuer.json`` only what a gateway needs to issue and revoke consumer
credentials; ``creds/<user>.creds`` one credentials file per platform user; ``server.conf`` the
part of the nats-server configuration that sets up operator mode (no secrets in it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from crewyard.errors import CrewyardError

from ._jwt import encode_jwt, format_creds, new_seed, public_key
from ._permissions import (
    SERVICES,
    Names,
    Permissions,
    admin_permissions,
    service_permissions,
    system_permissions,
)

ACCOUNT_NAME = "CREWYARD"
USERS = (*SERVICES, "admin")
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True}


class TrustError(CrewyardError, RuntimeError):
    """Missing or unreadable NATS trust material."""


class Issuer(msgspec.Struct, frozen=True, kw_only=True):
    """What signs account updates and user credentials (a gateway holds this, not the root keys)."""

    operator_signing_seed: str
    account_public_key: str
    account_signing_seed: str
    system_account_public_key: str
    system_user_creds: str

    def account_jwt(self, revocations: dict[str, int] | None = None) -> str:
        """The platform account's JWT; ``revocations`` maps user public keys to the time (unix
        seconds) before which their credentials no longer count."""
        nats: dict[str, Any] = {
            "type": "account",
            "version": 2,
            "signing_keys": [public_key(self.account_signing_seed)],
            "limits": {
                **_UNLIMITED,
                "conn": -1,
                "leaf": -1,
                "mem_storage": -1,
                "disk_storage": -1,
                "streams": -1,
                "consumer": -1,
            },
        }
        if revocations:
            nats["revocations"] = dict(sorted(revocations.items()))
        return encode_jwt(self.account_public_key, ACCOUNT_NAME, nats, self.operator_signing_seed)

    def user_creds(self, name: str, permissions: Permissions, *, expires: int | None = None) -> str:
        """A ``.creds`` text for a new user of the platform account with ``permissions``."""
        seed = new_seed("user")
        return format_creds(self.user_jwt(name, public_key(seed), permissions, expires=expires), seed)

    def user_jwt(
        self, name: str, user_public_key: str, permissions: Permissions, *, expires: int | None = None
    ) -> str:
        nats = {
            "type": "user",
            "version": 2,
            "issuer_account": self.account_public_key,
            "subs": -1,
            "data": -1,
            "payload": -1,
            **permissions.claims(),
        }
        return encode_jwt(user_public_key, name, nats, self.account_signing_seed, expires=expires)


class Trust(msgspec.Struct, frozen=True, kw_only=True):
    """Every seed of the trust chain."""

    operator_seed: str
    operator_signing_seed: str
    system_account_seed: str
    account_seed: str
    account_signing_seed: str
    system_user_seed: str

    @classmethod
    def new(cls) -> Trust:
        return cls(
            operator_seed=new_seed("operator"),
            operator_signing_seed=new_seed("operator"),
            system_account_seed=new_seed("account"),
            account_seed=new_seed("account"),
            account_signing_seed=new_seed("account"),
            system_user_seed=new_seed("user"),
        )

    def operator_jwt(self) -> str:
        nats = {
            "type": "operator",
            "version": 2,
            "signing_keys": [public_key(self.operator_signing_seed)],
            "system_account": public_key(self.system_account_seed),
        }
        return encode_jwt(public_key(self.operator_seed), "crewyard", nats, self.operator_seed)

    def system_account_jwt(self) -> str:
        nats = {"type": "account", "version": 2, "limits": {**_UNLIMITED, "conn": -1, "leaf": -1}}
        return encode_jwt(public_key(self.system_account_seed), "SYS", nats, self.operator_seed)

    def issuer(self) -> Issuer:
        nats = {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}
        nats |= system_permissions().claims()
        system_jwt = encode_jwt(public_key(self.system_user_seed), "system", nats, self.system_account_seed)
        return Issuer(
            operator_signing_seed=self.operator_signing_seed,
            account_public_key=public_key(self.account_seed),
            account_signing_seed=self.account_signing_seed,
            system_account_public_key=public_key(self.system_account_seed),
            system_user_creds=format_creds(system_jwt, self.system_user_seed),
        )

    def server_config(self, resolver_dir: Path) -> str:
        """The operator-mode part of a nats-server configuration (public JWTs only)."""
        issuer = self.issuer()
        return (
            "# Operator mode: every client authenticates with a user JWT of the platform's account.\n"
            f"operator: {self.operator_jwt()}\n"
            "# A client's CONNECT line carries its JWT, with its permissions in it.\n"
            "max_control_line: 32KB\n"
            f"system_account: {issuer.system_account_public_key}\n"
            "resolver: {\n"
            "  type: full\n"
            f"  dir: {json.dumps(str(resolver_dir))}\n"
            "  allow_delete: false\n"
            '  interval: "2m"\n'
            "}\n"
            "resolver_preload: {\n"
            f"  {issuer.system_account_public_key}: {self.system_account_jwt()}\n"
            f"  {issuer.account_public_key}: {issuer.account_jwt()}\n"
            "}\n"
        )

    def user_creds(self, user: str, names: Names) -> str:
        permissions = admin_permissions() if user == "admin" else service_permissions(user, names)
        return self.issuer().user_creds(user, permissions)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (created 0600, never briefly wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def load_or_create(directory: Path) -> Trust:
    """The trust chain kept in ``directory`` (made on first use)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / "trust.json"
    if path.exists():
        try:
            return msgspec.json.decode(path.read_bytes(), type=Trust)
        except (OSError, msgspec.DecodeError) as exc:
            raise TrustError(f"cannot read NATS trust material {path}: {exc}") from exc
    trust = Trust.new()
    _write_private(path, msgspec.json.encode(trust).decode())
    return trust


def write_material(directory: Path, trust: Trust, names: Names) -> None:
    """Write the issuer file, one credentials file per platform user and the server config
    include. Credentials are issued anew each time, so permissions follow the installed version."""
    (directory / "creds").mkdir(parents=True, exist_ok=True)
    os.chmod(directory / "creds", 0o700)
    _write_private(directory / "issuer.json", msgspec.json.encode(trust.issuer()).decode())
    for user in USERS:
        _write_private(directory / "creds" / f"{user}.creds", trust.user_creds(user, names))


def load_issuer(path: Path) -> Issuer:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Issuer)
    except (OSError, msgspec.DecodeError) as exc:
        raise TrustError(f"cannot read the NATS issuer keys {path}: {exc}") from exc
