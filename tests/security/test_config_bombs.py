"""Crew configs built to hurt: a small crewyard.toml that would expand into gigabytes (its
top-level exclude list and env table copied into ten thousand deployments), and configs holding
lone surrogates (text no UTF-8 encoder takes, so a message, event or response carrying one fails).

Each is refused as ``invalid_config`` naming the limit or where the bad text is: by the parser,
in a child process whose address space is capped (a regression fails there, it does not take the
machine's memory), and through a real platform's upload, whose peak memory barely moves and which
still serves afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from crewyard.packaging import MAX_CONFIG_BYTES
from crewyard.testing.api import tarball
from crewyard.testing.platform import PlatformProcess

PROJECT = "config-bombs"
GZ = {"Content-Type": "application/gzip"}
#: Growth of peak resident memory a bomb may cause (tests/security/README.md); it used to be 8 GiB.
MEMORY_BOUND = 100 << 20


def _bomb(excludes: int, deployments: int, env: int = 0) -> bytes:
    top = "[build]\nexclude = [" + ",".join('"x"' for _ in range(excludes)) + "]\n"
    top += "[env]\n" + "".join(f'V{i}="x"\n' for i in range(env))
    deps = "".join(f'[deployments.d{i}]\nentrypoint="m:f"\n' for i in range(deployments))
    return (top + deps).encode()


#: The reviewer's bomb (100,000 excludes x 10,000 deployments), and each dimension alone.
BOMBS: list[tuple[str, bytes, str]] = [
    ("excludes x deployments", _bomb(100_000, 10_000), "more than the limit of 1000"),
    ("deployments", _bomb(0, 10_000), "defines 10000 deployments, more than the limit of 64"),
    ("env x deployments", _bomb(0, 64, env=20_000), "sets 20000 variables, more than the limit of 256"),
]


#: Reads stdin as an upload with packaging.check, as the gateway does, under a 2 GiB address space.
_CHECK = """
import json, resource, sys
from crewyard.packaging import ArchiveError, check

body = sys.stdin.buffer.read()
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    check(body)
    out = {"error": None}
except ArchiveError as exc:
    out = {"error": str(exc), "code": exc.code}
except MemoryError:
    out = {"error": "MemoryError"}
out["growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps(out))
"""


@pytest.mark.parametrize(("what", "config", "needle"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_config_bomb_is_refused_by_the_check_with_bounded_memory(
    what: str, config: bytes, needle: str
) -> None:
    body = tarball({"crewyard.toml": config})
    assert len(config) <= MAX_CONFIG_BYTES and len(body) < 64 << 10, f"{what}: the bomb itself is small"
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], input=body, capture_output=True, timeout=300, check=True
    )
    out = json.loads(done.stdout)
    assert out["error"] is not None and needle in out["error"], out
    assert out["code"] == "invalid_config"
    assert out["growth"] < MEMORY_BOUND, out


SURROGATES: list[tuple[str, dict[str, bytes], str]] = [
    (
        "graph name",
        {"langgraph.json": b'{"graphs": {"\\ud800": 3}}'},
        "a key in 'graphs' holds a lone surrogate",
    ),
    (
        "env value",
        {"langgraph.json": b'{"graphs": {"agent": "./crew.py:run"}, "env": {"X": "\\udfff"}}'},
        "'env.X' holds a lone surrogate",
    ),
]


def _refused(r: httpx.Response, needle: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "invalid_config" and needle in error["message"], error
    return error


@pytest.mark.parametrize(("what", "files", "needle"), SURROGATES, ids=[s[0] for s in SURROGATES])
def test_an_upload_with_a_lone_surrogate_is_a_400_invalid_config(
    platform: PlatformProcess, api: httpx.Client, what: str, files: dict[str, bytes], needle: str
) -> None:
    body = tarball({**files, "crew.py": b"def run(i):\n    return i\n"})
    _refused(api.post(f"/v1/projects/{PROJECT}/deployments", content=body, headers=GZ), needle)
    assert api.get("/healthz").status_code == 200


def test_the_reviewers_config_bomb_upload_is_a_400_with_bounded_platform_memory(
    platform: PlatformProcess, api: httpx.Client
) -> None:
    what, config, needle = BOMBS[0]
    body = tarball({"crewyard.toml": config, "m.py": b"def f(i):\n    return i\n"})
    before = platform.peak_rss()
    _refused(api.post(f"/v1/projects/{PROJECT}/deployments", content=body, headers=GZ), needle)
    assert platform.peak_rss() - before < MEMORY_BOUND, what
    assert api.get("/healthz").status_code == 200
    # Nothing was stored: a first deployment creates its project, and there is none.
    assert api.get(f"/v1/projects/{PROJECT}/deployments").status_code == 404
