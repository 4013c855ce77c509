"""Hostile crew uploads, built without tarfile (which refuses to write most of them), for tests.

Large zero runs are one gzip member compressed once and repeated (a gzip file may hold many
members), so a bomb that unpacks to gigabytes costs the test a second to build.
"""

from __future__ import annotations

import functools
import gzip

CONFIG = b'[deployment]\nframework = "python"\nentrypoint = "crew:run"\n'
_ZEROS_MIB = 99


def member(name: bytes, kind: bytes, size: int, *, prefix: bytes = b"", mode: bytes = b"0000644") -> bytes:
    """One ustar header block (checksum included)."""
    header = bytearray(512)
    header[: len(name)] = name
    header[100:108] = mode + b"\0"
    header[124:136] = f"{size:011o}\0".encode()
    header[148:156] = b" " * 8
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[345 : 345 + len(prefix)] = prefix
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    return bytes(header)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def config_member() -> bytes:
    return member(b"crewyard.toml", b"0", len(CONFIG)) + pad(CONFIG)


@functools.cache
def _zeros_member() -> bytes:
    return gzip.compress(bytes(_ZEROS_MIB << 20), compresslevel=9)


def _zeros(mib: int) -> bytes:
    """At least ``mib`` MiB of zeros (whole multiples of 99 MiB), as gzip members."""
    return _zeros_member() * -(-mib // _ZEROS_MIB)


def pax_digits(digits: int = 128_000) -> bytes:
    """A pax header whose length field has ``digits`` digits: quadratic in tarfile's regex."""
    pax = b"1" + b"0" * (digits - 1) + b" path=x\n"
    return gzip.compress(config_member() + member(b"pax", b"x", len(pax)) + pad(pax), 9)


def pax_expanding(size: int = 1 << 30) -> bytes:
    """A pax header of ``size`` bytes (about 1 MiB of upload for 1 GiB)."""
    return gzip.compress(config_member() + member(b"pax", b"x", size), 9) + _zeros(size >> 20)


def huge_member(size: int = 450 << 20) -> bytes:
    """One member of ``size`` bytes of zeros."""
    return gzip.compress(config_member() + member(b"big.bin", b"0", size), 9) + _zeros(size >> 20)


def many_files(count: int = 100_000) -> bytes:
    """``count`` empty files."""
    headers = b"".join(member(f"f/{i}".encode(), b"0", 0) for i in range(count))
    return gzip.compress(config_member() + headers, 6)


def _pax_record(key: str, value: str) -> bytes:
    """``"<length> key=value\n"``, the length counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def deep_paths(count: int = 2_000, depth: int = 500) -> bytes:
    """``count`` empty files, each ``depth`` folders deep under a top folder of its own (names in
    pax headers): a few hundred bytes of upload per file, ``depth`` folders implied by each."""
    deep = "/".join(["x"] * depth)
    headers = []
    for i in range(count):
        pax = _pax_record("path", f"{i:05d}/{deep}/f")
        headers.append(member(b"pax", b"x", len(pax)) + pad(pax) + member(b"f", b"0", 0))
    return gzip.compress(config_member() + b"".join(headers), 9)


def unpacks_to(total_mib: int = 600) -> bytes:
    """Files of 99 MiB of zeros each, together over ``total_mib`` (each under a per-file limit)."""
    files = -(-total_mib // _ZEROS_MIB)
    parts = [gzip.compress(config_member(), 9)]
    for i in range(files):
        parts.append(gzip.compress(member(f"zeros{i}.bin".encode(), b"0", _ZEROS_MIB << 20), 9))
        parts.append(_zeros_member())
    return b"".join(parts)
