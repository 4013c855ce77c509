"""Artifact names a crew chooses cannot inject headers: downloads carry an RFC 6266 / 5987
``Content-Disposition`` (ASCII fallback + exact UTF-8 name), and names with control characters
are never stored (the run says so in a warning, the name escaped, and still succeeds)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import pytest

from crewyard.testing.api import run_once, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

PROJECT = "names-art"
STORED = [
    'report "quoted".md',
    "naïve résumé.txt",
    "semi;colon=x; filename=evil.sh",
    "100%41.txt",
    "back\\slash.txt",
    "sub/dir/deep name.txt",
]
REFUSED = ["inject\r\nSet-Cookie: pwned=1.txt", "tab\there.txt", "new\nline.txt"]
CODE = f"""
from pathlib import Path
from crewyard_runtime import artifacts_dir

NAMES = {STORED + REFUSED!r}


def run(inputs):
    root = Path(artifacts_dir())
    for name in NAMES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("content of " + name)
    return {{"written": len(NAMES)}}
"""


@pytest.fixture(scope="module")
def finished_run(platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = write_crew(tmp_path_factory.mktemp("odd-names") / "crew", CODE)
    with platform.client(timeout=60) as api:
        return run_once(api, folder, PROJECT)


def test_names_with_control_characters_are_not_stored_and_the_run_says_so(api, finished_run):
    assert finished_run["status"] == "succeeded", finished_run
    listed = {a["name"] for a in api.get(f"/v1/runs/{finished_run['id']}/artifacts").json()["artifacts"]}
    assert listed == set(STORED)
    events = sse_events(api, f"/v1/runs/{finished_run['id']}/events")
    warnings = [e["data"]["data"]["message"] for e in events if e["event"] == "log"]
    refused = [w for w in warnings if w.endswith(": not collected: its name holds control characters")]
    assert sorted(refused) == sorted(
        "artifact skipped: "
        + name.replace("\r", "\\x0d").replace("\n", "\\x0a").replace("\t", "\\x09")
        + ": not collected: its name holds control characters"
        for name in REFUSED
    ), warnings


@pytest.mark.parametrize("name", STORED)
def test_downloads_carry_the_exact_name_encoded_and_a_safe_fallback(api, finished_run, name):
    r = api.get(f"/v1/runs/{finished_run['id']}/artifacts/{quote(name)}")
    assert r.status_code == 200, r.text
    assert r.content == f"content of {name}".encode()
    disposition = r.headers["content-disposition"]
    assert "set-cookie" not in {k.lower() for k in r.headers}
    basename = name.rsplit("/", 1)[-1]
    kind, *params = [p.strip() for p in _split(disposition)]
    assert kind == "attachment"
    values = dict(p.split("=", 1) for p in params)
    assert set(values) == {"filename", "filename*"}
    fallback = values["filename"]
    assert fallback.startswith('"') and fallback.endswith('"')
    assert all(" " <= c <= "~" and c not in '"\\' for c in fallback[1:-1])
    charset, _, encoded = values["filename*"].partition("''")
    assert charset == "UTF-8" and unquote(encoded) == basename


def _split(header: str) -> list[str]:
    """Split on ``;`` outside quoted strings (the fallback may hold ``;``)."""
    parts, current, quoted = [], "", False
    for c in header:
        if c == '"':
            quoted = not quoted
        if c == ";" and not quoted:
            parts.append(current)
            current = ""
        else:
            current += c
    return [*parts, current]


def test_the_platform_still_serves_afterwards(api, finished_run):
    assert api.get("/healthz").status_code == 200
    run = api.post("/v1/runs", json={"project": PROJECT}).json()["run_id"]
    assert wait_run(api, run)["status"] == "succeeded"
