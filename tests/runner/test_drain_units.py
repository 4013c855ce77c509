"""The runner's stop logic on its own: a busy runner still notices a stop, and an attempt handed
back is told apart from one a user canceled."""

from __future__ import annotations

import asyncio

from crewyard.runner.attempts import Attempt
from crewyard.runner.service import _free_slot


async def test_a_runner_whose_slots_are_all_busy_still_notices_a_stop():
    free, stop = asyncio.Semaphore(1), asyncio.Event()
    assert await _free_slot(free, stop)  # takes the only slot
    waiting = asyncio.create_task(_free_slot(free, stop))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(waiting, 10) is False
    free.release()
    assert not free.locked()  # the stopped wait took no slot


async def test_a_free_slot_is_not_taken_once_stopping():
    free, stop = asyncio.Semaphore(2), asyncio.Event()
    stop.set()
    assert await _free_slot(free, stop) is False
    assert free._value == 2


def test_hand_back_ends_the_attempt_but_a_users_cancel_that_came_first_wins():
    handed = Attempt("run_a", "p")
    handed.hand_back()
    assert handed.cancel.is_set() and handed.handed_back

    canceled = Attempt("run_b", "p")
    canceled.cancel.set()  # run.cancel_requested arrived first
    canceled.hand_back()
    assert canceled.cancel.is_set() and not canceled.handed_back
