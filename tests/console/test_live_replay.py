"""How the console's live run page replays a run's events: where each lands, and that a long
replay shares the event loop every service of ``crewyard up`` runs on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any, cast

from crewyard.gateway.console.live import _timeline
from crewyard.gateway.console.viewer import Viewer
from crewyard.gateway.sse import Batches

from .test_timeline import NESTED_RUN, NESTED_RUN_PLACED

_PLACED = re.compile(r'<li id="([^"]+)" class="[^"]*" data-into="([^"]+)"')


class _ReadModelWithoutTheRun:
    """Enough of the gateway for a replay: the run's header and artifacts are not its concern."""

    async def wait_for(self, seq: int, timeout: float | None = None) -> bool:
        return True

    async def run(self, run_id: str) -> None:
        return None


def _gateway() -> Any:
    return type("Gateway", (), {"rm": _ReadModelWithoutTheRun()})()


async def _replay(events: list[tuple[str, dict[str, Any]]]) -> Batches:
    """The whole run in one batch, as the run's feed hands it to a page that just opened."""
    yield [
        (seq, kind, f"id: {seq}\nevent: {kind}\ndata: {json.dumps({'type': kind, 'data': data})}".encode())
        for seq, (kind, data) in enumerate(events, 1)
    ]


async def test_a_nested_run_replays_into_the_groups_it_always_did() -> None:
    replay = _timeline(_gateway(), cast(Viewer, None), "r1", _replay(NESTED_RUN), 0)
    [(last_seq, last_type, body)] = await anext(replay)
    assert (last_seq, last_type) == (len(NESTED_RUN), "run.completed")
    expected = [(group or f"ev{seq}", into) for seq, (into, group, _, _) in enumerate(NESTED_RUN_PLACED, 1)]
    assert _PLACED.findall(body.decode()) == expected


async def test_a_long_replay_gives_the_event_loop_back_while_it_renders() -> None:
    # Rendering the longest run a crew may emit takes seconds: other requests (``/healthz``,
    # every other service's handlers) get turns meanwhile, not only once the replay is sent.
    events: list[tuple[str, dict[str, Any]]] = [("log", {"message": f"line {i}"}) for i in range(2048)]
    turns = 0

    async def other_requests() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    others = asyncio.create_task(other_requests())
    await asyncio.sleep(0)
    before = turns
    [(last_seq, _, _)] = await anext(_timeline(_gateway(), cast(Viewer, None), "r1", _replay(events), 0))
    during = turns - before
    others.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await others
    assert last_seq == len(events)
    assert during >= len(events) // 256  # a turn at least every 256 events
