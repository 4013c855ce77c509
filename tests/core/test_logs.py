"""JSON logs carry the ids bound for the piece of work at hand, per asyncio task."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from crewyard import logs


def _capture() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("crewyard.test_logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


async def test_each_task_logs_with_its_own_run_id():
    logger, out = _capture()

    async def work(run_id: str) -> None:
        with logs.bind(run_id=run_id, project="p"):
            await asyncio.sleep(0)
            logger.info("started %s", run_id)

    await asyncio.gather(work("run_a"), work("run_b"))
    logger.warning("outside any run")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(line.get("run_id"), line["message"]) for line in lines} == {
        ("run_a", "started run_a"),
        ("run_b", "started run_b"),
        (None, "outside any run"),
    }
    assert all(line["logger"] == "crewyard.test_logs" and "time" in line for line in lines)
    assert lines[-1]["level"] == "warning"
