"""Encryption of environment variable values before they enter the stream (AES-256-GCM), and
their redaction from a run's log text.

The key lives outside the stream: ``CREWYARD_SECRET_KEY`` (base64 of 32 bytes) or a file
``secret.key`` generated into the data directory on first start. The associated data binds a
ciphertext to its project and key name, so a value cannot be replayed under another name.

Redaction (:class:`Redactor`) sees text the way a run's output arrives: in lines, some of them
pieces of a longer line cut at a size limit. So a value is replaced whole, each line of a
multi-line value (a PEM key, JSON credentials) on its own too, and where the caller says text was
cut, a fragment of a value at the cut. It is a guard against a crew printing a secret by
accident, not against one that means to leak it (it can print it backwards).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from bisect import bisect_left
from collections.abc import Iterable
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


#: Shorter values are not redacted: a secret ``1`` would mask every digit of every log.
MIN_SECRET = 4
#: A line of a multi-line value is redacted on its own from this length (not ``}``, not ``{``).
MIN_SECRET_LINE = 8
#: Where text was cut, a fragment of a value this long or longer is masked at the cut.
MIN_FRAGMENT = 4
MASK = "***"


class Redactor:
    """A run's secret values, prepared once for the many lines of its output.

    Called with a text, it replaces every value of :data:`MIN_SECRET`+ characters, and every line of
    :data:`MIN_SECRET_LINE`+ characters (without its indentation) of a multi-line value: text is
    split at newlines before it gets here, and no line holds such a value whole. Longest first,
    so that a value is replaced whole where it is whole, before its lines are.

    ``tail=True`` says ``text`` stops where a longer text was cut: the longest end of it that is
    the beginning of a value (or of such a line), :data:`MIN_FRAGMENT`+ characters, is masked.
    ``head=True`` says it starts at a cut: the longest start that is the end of one is masked.
    Shorter fragments of a value may show at a cut. Only text at a cut pays for these checks;
    every line pays for one substring search per value, and per line of a multi-line value, that
    is not longer than it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {v for v in secrets if len(v) >= MIN_SECRET}
        lines = {line.strip() for v in values if "\n" in v for line in v.splitlines()}
        lines = {line for line in lines if len(line) >= MIN_SECRET_LINE}
        self._needles = sorted(values | lines, key=len, reverse=True)
        self._longest_first = [-len(n) for n in self._needles]  # to skip those longer than a text
        # What a cut can fall inside of (a line of output holds a single-line value or a line of
        # one), with how each begins and ends: where to look for a fragment of it.
        self._pieces = [(v, v[:MIN_FRAGMENT], v[-MIN_FRAGMENT:]) for v in self._needles if "\n" not in v]

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __call__(self, text: str, *, head: bool = False, tail: bool = False) -> str:
        for needle in self._needles[bisect_left(self._longest_first, -len(text)) :]:
            if needle in text:
                text = text.replace(needle, MASK)
        if head:
            text = self._mask_head(text)
        if tail:
            text = self._mask_tail(text)
        return text

    def _mask_tail(self, text: str) -> str:
        start = len(text)
        for piece, probe, _ in self._pieces:
            at = text.find(probe, max(0, len(text) - len(piece)))
            while 0 <= at < start:
                if piece.startswith(text[at:]):
                    start = at
                    break
                at = text.find(probe, at + 1)
        return text if start == len(text) else text[:start] + MASK

    def _mask_head(self, text: str) -> str:
        end = 0
        for piece, _, probe in self._pieces:
            at = text.rfind(probe, 0, len(piece))
            while at >= 0 and at + MIN_FRAGMENT > end:
                if piece.endswith(text[: at + MIN_FRAGMENT]):
                    end = at + MIN_FRAGMENT
                    break
                at = text.rfind(probe, 0, at + MIN_FRAGMENT - 1)
        return text if end == 0 else MASK + text[end:]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with the secret values in it replaced by ``***`` (see :class:`Redactor`; one
    that serves many texts is cheaper)."""
    return Redactor(secrets)(text)
