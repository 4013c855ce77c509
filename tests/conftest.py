"""Fixtures shared by the whole suite: a real nats-server with JetStream, an event store on a
stream of its own per test, and whole platforms started as child processes.

Tests are marked ``slow`` when they start a whole platform, a container engine or a sandbox
(root), import an agent framework, or live in a folder made of such tests: ``pytest -m "not
slow"`` is the fast inner loop (unit tests and contract tests against a nats-server and SQLite,
well under a minute); ``make test`` runs everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from moto.server import ThreadedMotoServer

from crewyard.eventstore import EventStore, StreamSettings, connect, ensure_stream
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.platform import PlatformProcess, free_port

REPO = Path(__file__).resolve().parents[1]
#: Folders whose tests all need root, a container engine, agent frameworks or a whole platform.
SLOW_FOLDERS = frozenset({"e2e", "backends", "runtime", "bench"})
#: Helpers whose import marks a module as one that starts whole platforms or clusters itself.
SLOW_HELPERS = ("PlatformProcess", "Cluster")
#: Fixtures that start a whole platform or a container engine.
SLOW_FIXTURES = frozenset({"platform", "quiet_platform", "docker_host", "base_image", "cluster"})
#: The files that take longest (one to three minutes each on 2 cores), run first: ``make test`` keeps a
#: file's tests in one worker, and a long file started near the end would be the whole suite's
#: tail while the other workers wait (a minute or two of it, measured). Longest first.
HEAVIEST_FIRST = (  # seconds of each file in a whole run (3 workers, 2 cores, a busy machine), measured
    "e2e/test_frameworks.py",  # 199
    "e2e/test_crew_packages.py",  # 153
    "builder/test_shared_environments.py",  # 133
    "e2e/test_cluster.py",  # 118 (alone)
    "e2e/test_lifecycle.py",  # 114
    "e2e/test_js_crews.py",  # 104
    "e2e/test_outage.py",  # 88
    "backends/test_docker_builder.py",  # 87
    "deploy/test_image.py",  # 87
    "e2e/test_threads.py",  # 73
    "security/test_crew_output.py",  # 68
    "runtime/test_crewai.py",  # 60
    "e2e/test_chaos.py",  # 60
    "console/test_console_manage.py",  # 57
    "gateway/test_metrics_and_shutdown.py",  # 56
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = REPO / "tests"
    for item in items:
        folder = Path(str(item.path)).relative_to(tests).parts[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        module = getattr(item, "module", None)
        starts_platforms = any(hasattr(module, name) for name in SLOW_HELPERS)
        if folder in SLOW_FOLDERS or fixtures & SLOW_FIXTURES or starts_platforms:
            item.add_marker(pytest.mark.slow)
    heavy = {name: rank for rank, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: heavy.get(Path(str(item.path)).relative_to(tests).as_posix(), len(heavy)))


BASE_IMAGE = os.environ.get("CREWYARD_TEST_BASE_IMAGE", "crewyard/base:bookworm")


@pytest.fixture(autouse=True, scope="session")
def _no_user_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The CLI never reads the config (API URL, keys) of whoever runs the tests."""
    os.environ["CREWYARD_CONFIG"] = str(tmp_path_factory.mktemp("config") / "config.json")


@pytest.fixture(autouse=True, scope="session")
async def _no_task_outlives_the_session() -> AsyncIterator[None]:
    """At the end, tasks still running in the session's event loop are cancelled until they end.

    The loop's own teardown cancels each task once and waits for all of them. A nats-py client
    reconnecting to a server that is gone can swallow that one cancel (on Python 3.11
    ``asyncio.wait_for`` returns its inner result — here the refused connection, which the
    client's retry loop catches — when both arrive together) and then retries every 0.5 s
    forever: the worker hung after its last test. Torn down after every other session fixture
    (it is set up first), before the loop's own teardown."""
    yield
    me = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 30
    while left := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
        if asyncio.get_running_loop().time() > deadline:
            break  # the loop's own teardown says what never ended
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.2)


@pytest.fixture(autouse=True)
def _signal_handlers_left_as_found() -> Iterator[None]:
    """Every test starts with Python's own SIGINT and SIGTERM handling, as in a terminal — also
    when the suite was started in the background, which ignores SIGINT for everything it starts —
    and leaves it so: a handler left behind would swallow the next test's Ctrl-C."""
    expected = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for sig, handler in expected.items():
        signal.signal(sig, handler)
    yield
    left = {sig: signal.getsignal(sig) for sig in expected}
    for sig, handler in expected.items():
        signal.signal(sig, handler)
    assert left == expected, f"signal handlers changed by this test: {left}"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The suite's nats-server; like every crewyard broker it refuses clients without credentials."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
def nats_admin(nats_server: EmbeddedNats) -> str:
    """Credentials (a ``.creds`` path) of the server's admin user, which may do anything."""
    return str(nats_server.creds("admin"))


@pytest.fixture
async def store(nats_url: str, nats_admin: str) -> AsyncIterator[EventStore]:
    """An event store on fresh streams (own names and subject prefixes) of the shared server."""
    tag = uuid.uuid4().hex[:10]
    settings = StreamSettings(
        name=f"T_{tag}",
        prefix=f"t{tag}.evt",
        object_bucket=f"T_{tag}_OBJ",
        platform_name=f"T_{tag}_PLATFORM",
        platform_prefix=f"t{tag}.platform",
        health_bucket=f"T_{tag}_HEALTH",
    )
    nc = await connect(nats_url, name="test", creds=nats_admin)
    es = EventStore(nc, settings)
    await ensure_stream(es.js, settings)
    yield es
    await nc.drain()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A running ``crewyard up`` (process backend) for a whole test module."""
    p = PlatformProcess(tmp_path_factory.mktemp("platform"))
    p.start()
    yield p
    p.stop()


@pytest.fixture
def api(platform: PlatformProcess) -> Iterator[httpx.Client]:
    """The platform's API with its admin key."""
    with platform.client() as client:
        yield client


@pytest.fixture(scope="session")
def docker_host() -> str:
    explicit = os.environ.get("CREWYARD_TEST_DOCKER_HOST")
    if explicit:
        return explicit
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "containers.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if res.returncode != 0:
        pytest.fail(f"scripts/containers.sh failed ({res.returncode}):\n{res.stderr[-4000:]}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("DOCKER_HOST=")]
    assert lines, f"scripts/containers.sh printed no DOCKER_HOST:\n{res.stdout}"
    return lines[-1].split("=", 1)[1]


@pytest.fixture(scope="session")
def base_image(docker_host: str) -> str:
    return BASE_IMAGE


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()
