"""Schedules in the pure core: cron in timezones across DST, the fold, catch-up and overlap."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from crewyard.core import schedules
from crewyard.core.events import (
    Payload,
    Recorded,
    ScheduleCreated,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    decode,
    encode,
    make_event,
)
from crewyard.core.schedules import (
    InvalidSchedule,
    check_cron,
    check_zone,
    decide,
    fold_schedule,
    next_times,
    zone,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_cron_is_checked():
    assert check_cron("*/5  *  * * *") == "*/5 * * * *"
    assert check_cron("@daily") == "@daily"
    for bad in ("61 * * * *", "* * * *", "* * * * * *", "nonsense"):
        with pytest.raises(InvalidSchedule):
            check_cron(bad)
    with pytest.raises(InvalidSchedule, match="timezone"):
        zone("Mars/Olympus")
    # croniter's R is a value picked anew at every reading: such a schedule never has a plan.
    for random in ("R R * * *", "0 R * * *", "r(0-5) * * * *"):
        with pytest.raises(InvalidSchedule, match="random"):
            check_cron(random)
    assert check_cron("0 9 * MAR FRI") == "0 9 * MAR FRI"  # names with an R in them are fine


def test_a_cron_whose_day_never_comes_and_a_folder_of_zones_are_refused():
    for never in ("0 0 30 2 *", "0 0 31 4 *", "0 0 1 1 1#5"):
        with pytest.raises(InvalidSchedule, match="never comes"):
            check_cron(never)
    assert check_cron("0 0 29 2 *") == "0 0 29 2 *"  # leap days do come
    for folder in ("America", "Etc"):
        with pytest.raises(InvalidSchedule, match="timezone"):
            zone(folder)
    # Zone files that are not the same zone on every machine are refused when a schedule is made.
    for host_dependent in ("localtime", "Factory", "posixrules", "right/UTC", "posix/Europe/Berlin"):
        with pytest.raises(InvalidSchedule, match="same on every machine"):
            check_zone(host_dependent)
    assert check_zone("Europe/Berlin") == "Europe/Berlin" and check_zone("UTC") == "UTC"


def test_a_daily_time_in_a_timezone():
    times = next_times("0 9 * * *", "America/New_York", utc(2026, 1, 1), 2)
    assert times == [utc(2026, 1, 1, 14), utc(2026, 1, 2, 14)]


def test_spring_forward_shifts_a_missing_time_by_the_gap():
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29.
    times = next_times("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 3)
    assert times == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]


def test_fall_back_fires_a_fixed_time_once_but_hourly_schedules_in_both_hours():
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25 (00:00-01:00 UTC is CEST, 01:00-02:00 UTC CET).
    daily = next_times("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12), 3)
    assert daily == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    hourly = next_times("30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 0), 4)
    assert hourly == [
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]


def test_times_after_an_instant_inside_a_repeated_hour():
    # 00:40 UTC is 02:40 CEST (the first 02:40 of 2026-10-25), 01:40 UTC the second (CET).
    assert next_times("30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 40), 2) == [
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]
    assert next_times("30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 40), 1) == [
        utc(2026, 10, 25, 2, 30)
    ]
    assert next_times("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 0), 1) == [utc(2026, 10, 26, 1, 30)]


def between(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The planned times after ``start`` up to ``end`` (included)."""
    out = []
    for t in schedules.times_after(expr, tz, start):
        if t > end:
            break
        out.append(t)
    return out


def test_frequent_schedules_fire_every_planned_time_of_both_passes_in_order():
    # America/New_York repeats 01:00-02:00 on 2024-11-03: 05:00-06:00 UTC is EDT, 06:00-07:00 EST.
    # The second pass of 01:00 came out after the first of 01:01, which was then dropped as not
    # later than it: 59 first-pass minutes were never planned.
    start, end = utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 7, 30)
    minutely = between("* * * * *", "America/New_York", start, end)
    assert minutely == [start + timedelta(minutes=m) for m in range(1, 181)]
    quarterly = between("*/15 * * * *", "America/New_York", start, end)
    assert quarterly == [start + timedelta(minutes=m) for m in range(15, 181, 15)]
    # Antarctica/Troll repeats two hours (01:00-03:00) on 2024-10-27, going from +02 to +00:
    # the first 02:00 is 00:00 UTC, after the first 01:00 (23:00) and before the second (01:00).
    hourly = between("0 * * * *", "Antarctica/Troll", utc(2024, 10, 26, 21, 30), utc(2024, 10, 27, 4))
    assert hourly == [utc(2024, 10, 26, h) for h in (22, 23)] + [utc(2024, 10, 27, h) for h in range(5)]


def test_a_daily_time_in_a_repeated_hour_still_fires_once():
    assert between("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), utc(2024, 11, 4, 12)) == [
        utc(2024, 11, 3, 5, 30),  # the first 01:30 (EDT), not the second
        utc(2024, 11, 4, 6, 30),
    ]


def test_a_time_after_a_two_hour_jump_comes_out_before_the_shifted_ones_of_the_jump():
    # Antarctica/Troll skips 01:00-03:00 on 2024-03-31 (+00 to +02): 02:00 does not exist and is
    # shifted to 04:00 (02:00 UTC); 03:00 exists, at 01:00 UTC. Both fire, in UTC order.
    times = between("0 2,3 * * *", "Antarctica/Troll", utc(2024, 3, 30, 12), utc(2024, 3, 31, 12))
    assert times == [utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)]


def test_a_frequent_schedule_across_a_jump_forward_fires_no_time_the_cron_does_not_name():
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29. 02:30 fires at 03:30 CEST (01:30 UTC); the
    # missing time's other reading, 00:30 UTC, is 01:30 CET, an hour "*/2" does not name.
    times = between("30 */2 * * *", "Europe/Berlin", utc(2026, 3, 28, 22), utc(2026, 3, 29, 5))
    assert times == [
        utc(2026, 3, 28, 23, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
        utc(2026, 3, 29, 4, 30),
    ]


def test_the_next_time_of_a_minutely_cron_takes_a_step_or_two(monkeypatch: pytest.MonkeyPatch):
    # The scheduler asks every schedule every half second: a walk of two hours each time (120
    # steps of croniter) made 150 idle schedules hold the platform's loop for seconds.
    steps = [0]

    class Counted(schedules.croniter):  # type: ignore[misc, name-defined]
        def get_next(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            steps[0] += 1
            return super().get_next(*args, **kwargs)

    monkeypatch.setattr(schedules, "croniter", Counted)
    for tz in ("UTC", "Europe/Berlin", "America/New_York"):
        steps[0] = 0
        after = utc(2026, 5, 1, 12, 0, 30)
        assert next_times("* * * * *", tz, after, 1) == [utc(2026, 5, 1, 12, 1)]
        assert steps[0] <= 2, (tz, steps[0])


def rec(seq: int, payload: Payload, at: datetime) -> Recorded:
    event = make_event(payload, project="acme", aggregate_id="sch_1", event_id=f"evt_{seq}", time=at)
    return Recorded(seq, decode(encode(event)))


def created(**kw) -> ScheduleCreated:
    return ScheduleCreated(**{"cron": "*/10 * * * *", "timezone": "UTC", "input": {}, **kw})


T0 = utc(2026, 5, 1, 12, 0)


def test_nothing_fires_before_creation_and_each_planned_time_once():
    state = fold_schedule("sch_1", [rec(1, created(), T0 + timedelta(minutes=1))])
    assert decide(state, T0 + timedelta(minutes=5), previous_run_active=False).action == "wait"
    d = decide(state, T0 + timedelta(minutes=10, seconds=1), previous_run_active=False)
    assert (d.action, d.planned_at, d.missed) == ("fire", T0 + timedelta(minutes=10), 0)
    fired = ScheduleFired(planned_at=T0 + timedelta(minutes=10), outcome="queued", run_id="run_1")
    state = fold_schedule("sch_1", [rec(1, created(), T0 + timedelta(minutes=1)), rec(2, fired, T0)])
    again = decide(state, T0 + timedelta(minutes=10, seconds=5), previous_run_active=False)
    assert again.action == "wait" and again.wake_at == T0 + timedelta(minutes=20)
    assert state.upcoming(T0 + timedelta(minutes=11), 2) == [
        T0 + timedelta(minutes=20),
        T0 + timedelta(minutes=30),
    ]


def test_a_schedule_whose_day_never_comes_stored_before_the_check_waits_forever():
    state = fold_schedule("sch_1", [rec(1, created(cron="0 0 30 2 *"), T0)])
    d = decide(state, T0 + timedelta(days=400), previous_run_active=False)
    assert (d.action, d.wake_at) == ("wait", None)
    assert state.upcoming(T0) == []


def test_catch_up_fires_the_latest_or_up_to_n_missed_times():
    later = T0 + timedelta(minutes=55)  # planned 12:10 … 12:50 were missed
    latest = fold_schedule("sch_1", [rec(1, created(), T0)])
    d = decide(latest, later, previous_run_active=False)
    assert (d.planned_at, d.missed) == (T0 + timedelta(minutes=50), 4)
    some = fold_schedule("sch_1", [rec(1, created(catch_up="all", catch_up_limit=2), T0)])
    d = decide(some, later, previous_run_active=False)
    assert (d.planned_at, d.missed) == (T0 + timedelta(minutes=40), 3)


def test_a_gap_longer_than_the_scan_keeps_its_latest_planned_times(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(schedules, "MAX_SCAN", 50)
    state = fold_schedule("sch_1", [rec(1, created(cron="* * * * *"), T0)])
    now = T0 + timedelta(hours=3, seconds=30)
    times, upcoming = schedules.due(state, now)
    assert times == [T0 + timedelta(minutes=180 - i) for i in range(49, -1, -1)]
    assert upcoming == T0 + timedelta(minutes=181)
    d = decide(state, now, previous_run_active=False)
    assert (d.planned_at, d.missed) == (T0 + timedelta(minutes=180), 49)  # counted up to the scan


def test_a_gap_far_longer_than_the_scan_is_walked_in_one_pass():
    # Each planned time past the scan copied the whole kept list: a minutely schedule down for a
    # year (half a million times, 20,000 kept) took over a minute. Kept in one pass, 400,000
    # planned times with 200,000 kept take a fraction of a second; copied, hours. In a process of
    # its own, which a generous bound ends (an interrupted walk is no clean test failure).
    walk = textwrap.dedent(
        """
        from datetime import UTC, datetime, timedelta
        from crewyard.core import schedules

        def minutes(expr, tz_name, after):
            for i in range(1, 400_002):
                yield after + timedelta(minutes=i)

        schedules.MAX_SCAN, schedules.times_after = 200_000, minutes
        t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
        state = schedules.ScheduleState(schedule_id="sch_1")
        state.exists, state.cron, state.timezone, state.plan_from = True, "* * * * *", "UTC", t0
        times, upcoming = schedules.due(state, t0 + timedelta(minutes=400_000))
        assert len(times) == 200_000 and times[0] == t0 + timedelta(minutes=200_001)
        assert times[-1] == t0 + timedelta(minutes=400_000)
        assert upcoming == t0 + timedelta(minutes=400_001)
        """
    )
    subprocess.run([sys.executable, "-c", walk], check=True, timeout=30)


def test_overlap_skip_queue_allow():
    for overlap, action in (("skip", "skip"), ("queue", "wait"), ("allow", "fire")):
        state = fold_schedule("sch_1", [rec(1, created(overlap=overlap), T0)])
        assert decide(state, T0 + timedelta(minutes=11), previous_run_active=True).action == action


def test_a_paused_schedule_never_fires_what_was_planned_during_the_pause():
    history = [
        rec(1, created(), T0),
        rec(2, SchedulePaused(), T0 + timedelta(minutes=5)),
    ]
    assert (
        decide(fold_schedule("sch_1", history), T0 + timedelta(hours=1), previous_run_active=False).action
        == "wait"
    )
    history.append(rec(3, ScheduleResumed(), T0 + timedelta(minutes=35)))
    d = decide(fold_schedule("sch_1", history), T0 + timedelta(minutes=41), previous_run_active=False)
    assert (d.planned_at, d.missed) == (T0 + timedelta(minutes=40), 0)
