"""What a schedule's answer shows as its next times: what the scheduler will fire next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crewyard.gateway.schedules import DUE_SHOWN, schedule_view

MADE = datetime(2026, 12, 4, 14, 50, 59, 999_000, tzinfo=UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row = {
        "id": "sch_01m90rdnqtt611tr4ch596b7xf",
        "project": "cron",
        "name": None,
        "cron": "* * * * *",
        "timezone": "UTC",
        "input": "{}",
        "deployment_id": None,
        "environment": "production",
        "overlap": "skip",
        "catch_up": "latest",
        "catch_up_limit": 10,
        "paused": 0,
        "created_at": MADE.isoformat(),
        "plan_from": MADE.isoformat(),
        "last_planned_at": None,
        "last_run_id": None,
        "fired": 0,
    }
    return {**row, **changes}


def _next(row: dict[str, Any], now: datetime) -> list[str]:
    return list(schedule_view(row, now).next_fire_times)


def test_a_minute_that_began_while_the_schedule_was_made_is_its_first_time():
    # Made a millisecond before 14:51, answered a few after: 14:51 fires, so the answer says so.
    answered = MADE + timedelta(milliseconds=6)
    assert _next(_row(), answered)[0] == "2026-12-04T14:51:00+00:00"


def test_times_the_scheduler_handled_or_long_past_are_not_shown():
    handled = _row(last_planned_at="2026-12-04T14:51:00+00:00")
    assert _next(handled, MADE + timedelta(seconds=2))[0] == "2026-12-04T14:52:00+00:00"
    # A due time left unhandled for longer (no scheduler running) is not shown as next.
    later = datetime(2026, 12, 4, 15, 30, 30, tzinfo=UTC)
    assert _next(_row(), later)[0] == "2026-12-04T15:31:00+00:00"
    assert later - DUE_SHOWN > datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
    assert _next(_row(paused=1), later) == []
