"""Starting crewyard: everything in one process (``crewyard up``), or one service alone
(``crewyard service NAME``) against an external NATS, plus ``projector rebuild`` and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console

from crewyard import datadir, logs
from crewyard.auth import Names
from crewyard.errors import CrewyardError
from crewyard.eventstore import EventStore, close, connect, ensure_platform_stream, ensure_stream
from crewyard.health import HealthListener, Readiness, Reply, health_routes, starting, wait_for_jetstream
from crewyard.natsserver import EmbeddedNats
from crewyard.objects import open_store
from crewyard.servicekit import ServiceContext, ServiceFactory
from crewyard.settings import Settings

SERVICES = ("builder", "runner", "projector", "gateway", "notifier", "scheduler")
console = Console(stderr=True)
log = logging.getLogger("crewyard")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def nats_names(settings: Settings) -> Names:
    """The streams and buckets NATS permissions are issued for."""
    return Names.of(settings.stream)


async def _store(settings: Settings, name: str, user: str | None = None) -> EventStore:
    """A connection as NATS user ``user`` (default: the service's own user)."""
    user = user or name
    nc = await connect(settings.nats_url, name=f"crewyard-{name}", creds=settings.creds_for(user))
    store = EventStore(
        nc, settings.stream, read_timeout=settings.store_timeout_s, request_timeout=settings.store_timeout_s
    )
    await ensure_stream(store.js, settings.stream)
    if user in ("gateway", "admin"):
        await ensure_platform_stream(store.js, settings.stream)
    return store


def _instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _readiness(name: str, settings: Settings) -> Readiness:
    # A projector only reads the stream: it is not asked to prove that it could write.
    return Readiness(name, instance=_instance(), writes=name != "projector", max_lag=settings.ready_max_lag)


async def _idle() -> None:
    return None


async def gateway_store(settings: Settings) -> EventStore:
    """A connection as the gateway's NATS user (admin commands run where a gateway runs)."""
    return await _store(settings, "gateway-admin", user="gateway")


def _has_admin_creds(settings: Settings) -> bool:
    admin = settings.creds_for("admin")
    return bool(admin) and ("BEGIN" in str(admin) or Path(str(admin)).exists())


async def _prepare_streams(settings: Settings) -> None:
    """As the admin user: create the streams, or bring an older installation's settings up to
    date (services may create streams but never change them)."""
    store = await _store(settings, "setup", user="admin")
    await store.nc.drain()


def _factories() -> dict[str, ServiceFactory]:
    """One factory per service (imported when a platform starts, not when the CLI does)."""
    from crewyard import builder, gateway, notifier, projector, runner, scheduler

    return {
        "builder": builder.create_service,
        "runner": runner.create_service,
        "projector": projector.create_service,
        "gateway": gateway.create_service,
        "notifier": notifier.create_service,
        "scheduler": scheduler.create_service,
    }


class StandIn:
    """The gateway's port before the API is up: it answers /healthz (alive), /readyz (503, and
    why) and every other request with a 503 (clients retry those). Bound first, so that the
    port answers while the broker, the streams and the other services start."""

    def __init__(self, settings: Settings, readiness: Readiness | None = None) -> None:
        self.readiness = readiness or _readiness("gateway", settings)
        self.listener = HealthListener(
            health_routes(self.readiness),
            host=settings.host,
            port=settings.port,
            fallback=starting(self.readiness),
            what="the API",
            port_hint="choose another with --port or CREWYARD_PORT",
        )

    async def start(self) -> StandIn:
        await self.listener.start()
        return self


async def _service(
    name: str,
    settings: Settings,
    stop: asyncio.Event,
    readiness: Readiness | None = None,
    stand_in: StandIn | None = None,
) -> Callable[[], Awaitable[None]]:
    """Start one service (once JetStream is there); returns the coroutine function that runs it
    until ``stop`` and then drains its NATS connection."""
    factory = _factories().get(name)
    if factory is None:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    placeholder = None
    if name == "gateway":
        stand_in = stand_in or await StandIn(settings, readiness).start()
        readiness, placeholder = stand_in.readiness, stand_in.listener
    try:
        store = await wait_for_jetstream(settings, name, stop, readiness)
    except BaseException:
        if placeholder is not None:
            await placeholder.stop()
        raise
    # The API takes the port over from its stand-in; the port is never let go in between.
    listener = await placeholder.detach() if placeholder is not None else None
    if store is None:  # stopped while waiting
        if listener is not None:
            listener.close()
        return _idle
    if readiness is not None:
        readiness.attach(store)
    try:
        context = ServiceContext(settings, store, open_store(settings, store.nc), readiness, listener)
        service = await factory(context)
    except BaseException:
        if listener is not None:
            listener.close()
        await close(store.nc)
        raise

    async def run() -> None:
        try:
            await service.run(stop)
        finally:
            await close(store.nc)

    return run


async def _run_all(
    names: tuple[str, ...],
    settings: Settings,
    stop: asyncio.Event,
    readiness: Readiness | None = None,
    stand_in: StandIn | None = None,
) -> None:
    """Run the services until ``stop``; ``readiness`` is the health of a service started alone.
    The gateway is started last: its stand-in answers until every other service is built."""
    names = tuple(sorted(names, key=lambda n: n == "gateway"))
    runners = [await _service(n, settings, stop, readiness, stand_in) for n in names]
    # What start-up made (modules, routes, schemas, clients) lives as long as the process: kept
    # out of the collector's full passes, which otherwise stalled the process 120-190 ms every few
    # seconds under load (every SSE client and run event waited through it; measured with 1,000
    # SSE clients: fan-out p99 210 -> 66 ms, the raw consumer's 71 -> 6.5 ms). Start-up's garbage
    # is collected first, so none of it is kept for good.
    gc.collect()
    gc.freeze()
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(_as_coro(r), name=n) for r, n in zip(runners, names, strict=True)
    ]
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for t in done:
            if t in tasks and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        # A runner drains (runner_drain_s), then gives what is left its cancel grace period.
        await asyncio.wait(tasks, timeout=settings.runner_drain_s + settings.cancel_grace_s + 20)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.warning("%s stopped with an error: %r", t.get_name(), t.exception())


async def _as_coro(run: Callable[[], Awaitable[None]]) -> None:
    await run()


def describe_backend(settings: Settings) -> str:
    from crewyard.runner.backends import select_backend

    backend = select_backend(settings)
    label = (
        "isolated" if backend.isolated else "NOT ISOLATED: crews run as plain processes (development only)"
    )
    return f"{backend.name} ({label})"


async def up(settings: Settings, *, embedded_nats: bool = True, stop: asyncio.Event | None = None) -> None:
    """Everything on one machine: embedded nats-server, the services, SQLite, object store."""
    names = _selected_services()
    # First of all, before anything is printed or written: a second platform on the same data
    # dir would rewrite the running one's api.url and nats.url, then fail on the runner's id.
    held = datadir.claim(settings.data_dir)
    try:
        if "runner" in names:  # a runner started alone (crewyard service runner) on this data dir
            from crewyard.runner.identity import RunnerIdentity

            RunnerIdentity.claim(settings.data_dir, settings.runner_id).release()
        await _up(settings, names, embedded_nats, stop or asyncio.Event())
    finally:
        held.release()


async def _up(settings: Settings, names: tuple[str, ...], embedded_nats: bool, stop: asyncio.Event) -> None:
    _stop_on_signals(stop)
    logs.configure(settings.log_level or "warning", settings.log_format)
    datadir.secure(settings.data_dir)
    if "CREWYARD_WEBHOOK_TARGETS" not in os.environ:
        settings.webhook_targets = "private"  # one machine: receivers on it or its network are fine
    broker = None
    if embedded_nats:
        port = int(os.environ.get("CREWYARD_NATS_PORT", "4222"))
        if port and "CREWYARD_NATS_PORT" not in os.environ and not _port_free(settings.host, port):
            port = 0  # the default port is taken (another NATS here): any free one will do
        broker = EmbeddedNats(settings.data_dir, port=port or None, names=nats_names(settings))
    # The API's port answers from the start (503 "starting: waiting for …"), never refused.
    stand_in = await StandIn(settings).start() if "gateway" in names else None
    try:
        if broker is not None:
            if stand_in is not None:
                stand_in.readiness.waiting("the embedded nats-server")
            if not await _wait_for_broker(broker, stop):
                return
            settings.nats_url = broker.url
            settings.nats_creds = str(broker.auth_dir / "creds")
        if stand_in is not None:
            stand_in.readiness.waiting("the runs' backend to be chosen")
        backend = await asyncio.to_thread(describe_backend, settings)
        console.print("[bold green]crewyard is up[/]", highlight=False)
        console.print(f"  API   http://{settings.host}:{settings.port}", highlight=False)
        console.print(f"  NATS  {settings.nats_url}", highlight=False)
        console.print(f"  data  {settings.data_dir}", highlight=False)
        console.print(f"  runs execute on: {backend}", highlight=False)
        (settings.data_dir / "api.url").write_text(f"http://{settings.host}:{settings.port}\n")
        (settings.data_dir / "nats.url").write_text(settings.nats_url + "\n")
        if _has_admin_creds(settings):
            if stand_in is not None:
                stand_in.readiness.waiting("the streams to be set up")
            await _prepare_streams(settings)
        if stand_in is not None:
            stand_in.readiness.waiting("the services to start")
        await _run_all(names, settings, stop, stand_in=stand_in)
    finally:
        if stand_in is not None:
            await stand_in.listener.stop()  # nothing, once the API took the port over
        if broker is not None:
            await asyncio.to_thread(broker.stop)


async def _wait_for_broker(broker: EmbeddedNats, stop: asyncio.Event) -> bool:
    """Start the embedded nats-server and wait, as long as it takes (a big store takes a while to
    recover), saying so every few seconds; False if stopped first."""
    await asyncio.to_thread(broker.launch)
    began = time.monotonic()
    said, shown_log = began, False
    while not await asyncio.to_thread(broker.ready):
        if stop.is_set():
            return False
        if time.monotonic() - said >= 5:
            said = time.monotonic()
            console.print(
                f"waiting for the embedded nats-server (JetStream, {broker.dir}) — {said - began:.0f} s:"
                f" {broker.seen}",
                highlight=False,
                markup=False,
            )
            if said - began >= 30 and not shown_log:
                shown_log = True
                tail = await asyncio.to_thread(broker.log_tail)
                console.print(f"its log so far ends with:\n{tail}", highlight=False, markup=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return True


def _selected_services() -> tuple[str, ...]:
    """``CREWYARD_SERVICES`` (comma-separated) narrows what ``up`` runs, e.g. to add runners elsewhere."""
    raw = os.environ.get("CREWYARD_SERVICES", "")
    names = tuple(n.strip() for n in raw.split(",") if n.strip()) or SERVICES
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ValueError(f"CREWYARD_SERVICES: unknown service(s) {', '.join(unknown)}")
    return names


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def run_service(name: str, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """One service alone, against the NATS at ``settings.nats_url`` (many processes, many machines)."""
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    logs.configure(settings.log_level or "info", settings.log_format)
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    datadir.secure(settings.data_dir)
    console.print(f"crewyard {name} — NATS {settings.nats_url}, data {settings.data_dir}")
    readiness = _readiness(name, settings)
    listener = None
    if name != "gateway":  # the gateway answers /healthz, /readyz and /metrics on its API port
        routes = {**health_routes(readiness), "/metrics": _metrics}
        listener = HealthListener(routes, host=settings.host, port=settings.health_port)
        console.print(f"  health {await listener.start()}/readyz (and /metrics)", highlight=False)
    try:
        await _run_all((name,), settings, stop, readiness)
    finally:
        if listener is not None:
            await listener.stop()


async def _metrics() -> Reply:
    """This process's Prometheus metrics (what its service counts and refreshes)."""
    from crewyard import metrics

    return Reply(200, await metrics.render(), metrics.CONTENT_TYPE)


class Interrupted(CrewyardError):
    """A signal (``signum``) stopped a command before it was done."""

    def __init__(self, signum: int, what: str, when: str) -> None:
        super().__init__(f"{what} was interrupted ({signal.Signals(signum).name}) {when}")
        self.signum = signum


async def rebuild_projection(settings: Settings) -> int:
    """Drop the read model and replay the stream from sequence 1; returns events replayed.
    Ctrl-C or SIGTERM, while it waits for NATS or replays, leaves the read model as it was (the
    replay is one transaction) and raises :class:`Interrupted`."""
    from crewyard.projector import rebuild

    datadir.secure(settings.data_dir)
    stop = asyncio.Event()
    signals: list[int] = []

    def stopped_by(signum: int) -> None:
        signals.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopped_by, sig)
    what = "the read model rebuild"
    store = await wait_for_jetstream(settings, "rebuild", stop, user="projector")
    if store is None:
        raise Interrupted(signals[0] if signals else signal.SIGINT, what, "while waiting for NATS")
    try:
        replay = asyncio.create_task(rebuild(store, settings.db_path))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({replay, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not replay.done():
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
            raise Interrupted(signals[0] if signals else signal.SIGINT, what, "before it was done")
        return replay.result()
    finally:
        await close(store.nc)


def examples_dir() -> Path:
    """The example crews: ``CREWYARD_EXAMPLES`` (the image sets it), else the repository's."""
    explicit = os.environ.get("CREWYARD_EXAMPLES")
    return Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "examples"


async def demo(settings: Settings) -> None:
    """``make run``: start the platform, deploy and run examples/hello live, then keep serving."""
    stop = asyncio.Event()
    platform = asyncio.create_task(up(settings, stop=stop))
    api = f"http://{settings.host}:{settings.port}"
    env = {**os.environ, "CREWYARD_API": api}
    cli = [sys.executable, "-m", "crewyard.cli"]

    async def step(*args: str) -> int:
        console.print(f"\n[bold]$ crewyard {shlex.join(args)}[/]", highlight=False)
        proc = await asyncio.create_subprocess_exec(*cli, *args, env=env)
        return await proc.wait()

    try:
        if not await _wait_healthy(api, platform):
            return
        key_file = settings.data_dir / "admin.key"
        if settings.auth and "CREWYARD_API_KEY" not in env and key_file.exists():
            env["CREWYARD_API_KEY"] = key_file.read_text().strip()
        hello = examples_dir() / "hello"
        steps = [
            ("deploy", str(hello), "--project", "hello"),
            ("invoke", "--project", "hello", "--input", '{"topic": "event sourcing"}', "--stream"),
        ]
        for args in steps:
            if await step(*args) != 0:
                console.print("[red]demo step failed[/]")
                break
        else:
            proc = await asyncio.create_subprocess_exec(
                *cli,
                "runs",
                "list",
                "--project",
                "hello",
                "--limit",
                "1",
                "--json",
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            import json

            runs = json.loads(out or b"{}").get("runs", [])
            if runs:
                await step("runs", "artifacts", runs[0]["id"])
        auth = f'-H "Authorization: Bearer $(cat {key_file})" ' if settings.auth else ""
        console.print(
            f"\n[bold green]The platform keeps running at {api}[/] — try `crewyard runs list`, "
            f"`curl {auth}{api}/v1/runs`, or open {api}/schema. Ctrl-C stops it.",
            highlight=False,
        )
        await platform
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await platform


async def _wait_healthy(api: str, platform: asyncio.Task[None], timeout: float = 60.0) -> bool:
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient() as client:
        while loop.time() < deadline:
            if platform.done():
                platform.result()
                return False
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(api + "/readyz", timeout=5)).status_code == 200:
                    return True
            await asyncio.sleep(0.2)
    console.print("[red]the platform did not become healthy in time[/]")
    return False
