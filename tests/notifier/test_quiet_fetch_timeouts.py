"""FastStream's supervisor reports an idle pull that nats-py ended with a plain TimeoutError as an
error with a traceback, then restarts the task: the notifier leaves exactly that one out."""

from __future__ import annotations

import logging
import sys

import nats.errors

from crewyard.notifier.service import _QuietFetchTimeouts


def _record(exc: BaseException, message: str) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("crewyard.notifier.faststream", logging.ERROR, __file__, 1, message, (), info)


def test_only_the_idle_pull_timeout_that_is_retried_is_left_out() -> None:
    quiet = _QuietFetchTimeouts()

    assert not quiet.filter(_record(TimeoutError(), "Task-123 raised an exception, retrying..."))
    # Anything else still reaches the log: other errors, other messages, nats' own timeout type.
    assert quiet.filter(_record(ValueError("bad"), "Task-123 raised an exception, retrying..."))
    assert quiet.filter(_record(TimeoutError(), "consumer gave up"))
    assert quiet.filter(_record(nats.errors.TimeoutError(), "Task-9 raised an exception, retrying..."))
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "Connection broken", (), None)
    assert quiet.filter(plain)
