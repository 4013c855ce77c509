"""Auth on by default: the first admin key, where it is kept, the limits on failed attempts and
on mutating requests, and the settings that keep a platform without keys on loopback."""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Iterator

import httpx
import pytest

from crewyard.settings import SettingsError, load
from crewyard.testing.platform import PlatformProcess


@pytest.fixture(scope="module")
def strict_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    env = {"CREWYARD_AUTH_FAIL_LIMIT": "1", "CREWYARD_RATE_LIMIT": "1", "CREWYARD_STREAMS_PER_KEY": "2"}
    p = PlatformProcess(tmp_path_factory.mktemp("front-door"), env=env).start()
    yield p
    p.stop()


def test_the_first_start_makes_one_admin_key_kept_for_its_owner_only(strict_platform: PlatformProcess):
    path = strict_platform.data_dir / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = strict_platform.admin_key
    assert token.startswith("cyk_")
    log = (strict_platform.data_dir / "platform.log").read_text()
    assert log.count("First admin API key") == 1 and token in log
    with strict_platform.client() as api:
        me = api.get("/v1/whoami").json()
        assert me["auth"] is True and me["key"]["role"] == "admin" and me["key"]["project"] is None
        assert "token" not in me["key"] or me["key"]["token"] is None
        assert httpx.get(strict_platform.api + "/v1/runs").status_code == 401


def test_failed_authentications_from_one_address_are_slowed_down(strict_platform: PlatformProcess):
    statuses = []
    with httpx.Client(base_url=strict_platform.api, timeout=30) as anon:
        for _ in range(500):
            r = anon.get("/v1/runs", headers={"Authorization": "Bearer cyk_" + "B" * 43})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                break
    assert set(statuses) == {401, 429} and statuses[-1] == 429
    with strict_platform.client() as api:  # a valid key from the same address still passes
        assert api.get("/v1/runs").status_code == 200


def test_mutating_requests_are_limited_per_key(strict_platform: PlatformProcess):
    with strict_platform.client() as api:
        key = api.post("/v1/keys", json={"role": "deploy", "project": "busy"}).json()["token"]
    statuses = []
    with strict_platform.client(key=key) as busy, strict_platform.client() as admin:
        for _ in range(500):
            r = busy.put("/v1/projects/busy/limits", json={"max_concurrent_runs": 2})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                break
        assert statuses[-1] == 429 and set(statuses) <= {404, 200, 429}
        # Reads are not limited, and another key has a bucket of its own.
        assert busy.get("/v1/projects").status_code == 200
        assert admin.get("/v1/whoami").status_code == 200


def test_without_keys_the_api_listens_on_loopback_only(tmp_path):
    assert load(tmp_path, auth=False).host == "127.0.0.1"
    assert load(tmp_path, auth=False, host="::1").auth is False
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        with pytest.raises(SettingsError, match="loopback"):
            load(tmp_path, auth=False, host=host)
    assert load(tmp_path, host="0.0.0.0").auth is True  # keys on: any address


def test_one_key_holds_at_most_its_share_of_event_streams(strict_platform: PlatformProcess):
    # Each stream is a connection and a consumer: a key's streams from many addresses could hold
    # every connection the gateway has.
    with strict_platform.client() as api, contextlib.ExitStack() as streams:
        other = api.post("/v1/keys", json={"role": "read", "project": "elsewhere"}).json()["token"]
        held = [streams.enter_context(api.stream("GET", "/v1/events")) for _ in range(2)]
        assert [r.status_code for r in held] == [200, 200]
        third = api.get("/v1/events", timeout=10)  # refused at once (else it streams: a timeout)
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "too_many_streams" and third.headers["Retry-After"]
        assert api.get("/v1/runs").status_code == 200  # other requests of the key go on
        # Another key has places of its own; a stream that is refused after the guard (no such
        # run) gives its place back at once.
        with httpx.Client(base_url=strict_platform.api, headers={"Authorization": f"Bearer {other}"}) as own:
            for _ in range(3):
                assert own.get("/v1/runs/run_00000000000000000000000000/events").status_code == 404
            with own.stream("GET", "/v1/projects/elsewhere/events") as mine:
                assert mine.status_code == 200
        held[0].close()
        deadline = time.monotonic() + 10
        while True:
            with api.stream("GET", "/v1/events") as again:
                if again.status_code == 200:
                    break
                assert again.status_code == 429 and time.monotonic() < deadline, "its place never came back"
            time.sleep(0.1)


def test_host_and_cors_settings(tmp_path):
    assert load(tmp_path).allowed_host_list == ("localhost", "127.0.0.1", "::1", "[::1]")
    assert load(tmp_path, host="0.0.0.0").allowed_host_list == ("*",)
    assert load(tmp_path, allowed_hosts="API.example.com, *.internal").allowed_host_list == (
        "api.example.com",
        "*.internal",
    )
    with pytest.raises(SettingsError, match="origin"):
        load(tmp_path, cors_origins="evil.example")
    with pytest.raises(SettingsError, match="negative"):
        load(tmp_path, auth_fail_limit=-1)
    with pytest.raises(SettingsError, match="CREWYARD_HEADER_TIMEOUT"):
        load(tmp_path, header_timeout_s=0)
    with pytest.raises(SettingsError, match="CREWYARD_CONNECTIONS_PER_ADDRESS"):
        load(tmp_path, connections_per_address=-1)
    with pytest.raises(SettingsError, match="CREWYARD_STREAMS_PER_KEY"):
        load(tmp_path, streams_per_key=-1)
    for kind in ("webhooks", "triggers", "schedules", "tables"):
        with pytest.raises(SettingsError, match=f"CREWYARD_MAX_{kind.upper()}"):
            load(tmp_path, **{f"max_{kind}": -1})
    assert load(tmp_path, connections_per_address=0).connections_per_address == 0  # no limit
    with pytest.raises(SettingsError, match="CREWYARD_STORE_TIMEOUT"):
        load(tmp_path, store_timeout_s=0)
