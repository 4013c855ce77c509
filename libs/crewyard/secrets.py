"""Encryption of environment variable values before they enter the stream (AES-256-GCM).

The key lives outside the stream: ``CREWYARD_SECRET_KEY`` (base64 of 32 bytes) or a file
``secret.key`` generated into the data directory on first start. The associated data binds a
ciphertext to its project and key name, so a value cannot be replayed under another name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crewyard.errors import CrewyardError


class SecretError(CrewyardError, ValueError):
    pass


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretError("secret key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (e.g. signing console sessions), never this one."""
        return hmac.new(self._key, f"crewyard-derived:{purpose}".encode(), hashlib.sha256).digest()

    @staticmethod
    def _aad(project: str, name: str) -> bytes:
        return f"crewyard-env:{project}:{name}".encode()

    def encrypt(self, project: str, name: str, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), self._aad(project, name))
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, project: str, name: str, token: str) -> str:
        try:
            raw = base64.b64decode(token)
            return self._aead.decrypt(raw[:12], raw[12:], self._aad(project, name)).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretError(f"cannot decrypt {name}: wrong key or damaged value") from exc


def load_key(data_dir: Path, key_b64: str | None = None) -> bytes:
    """The configured key, else the data dir's key file (created, mode 600, on first use)."""
    if key_b64:
        try:
            key = base64.b64decode(key_b64)
        except ValueError:
            raise SecretError("CREWYARD_SECRET_KEY is not base64") from None
        if len(key) != 32:
            raise SecretError("CREWYARD_SECRET_KEY must decode to 32 bytes")
        return key
    path = data_dir / "secret.key"
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode())
    return key


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value (4+ characters) in ``text`` by ``***``."""
    for value in secrets:
        if len(value) >= 4 and value in text:
            text = text.replace(value, "***")
    return text
